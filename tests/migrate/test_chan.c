/*
 * test_chan.c - the migration channel as migration meets it, over real sockets and real
 * TLS: data crosses TCP (IPv4, IPv6) and Unix sockets intact, with and without TLS; every
 * misconfiguration an operator can make (wrong CA on either side, wrong host name, expired
 * certificate, no client certificate, TLS on one side only) fails on both sides, promptly,
 * with words that say what is wrong; an abort or a timeout ends a blocked call; and a state
 * stream travels through chan_stream_io.
 *
 * Certificates come from mkcerts.sh, made at build time into $HV_TEST_CERTS.
 */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "migrate/chan.h"
#include "migrate/stream.h"

#define XFER   (4u << 20) /* bytes each way in a round trip */
#define TMO    5000       /* ms: any test that takes this long has hung */
#define PROMPT 2000       /* ms: what "fails promptly" means here */

static const char *certs;
static char tmpdir[] = "/tmp/hv-chan-XXXXXX";

static int64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *cpath(const char *name)
{
	static char b[8][512];
	static int next;
	char *p = b[next++ % 8];

	snprintf(p, 512, "%s/%s", certs, name);
	return p;
}

/* Every word must appear in @msg (case-insensitively); the message is shown in the log. */
static void expect_words(const char *msg, ...)
{
	const char *w;
	va_list ap;

	printf("    -> %s\n", msg);
	va_start(ap, msg);
	while ((w = va_arg(ap, const char *)))
		if (!strcasestr(msg, w))
			fail_msg("error '%s' does not say '%s'", msg, w);
	va_end(ap);
}

/* The client name a server made by tls_side requires (chan_tls_config.peer_name). */
static const char *server_peer_name;

/* A TLS side: certificate and key NAME.pem/NAME.key, trusting CA.pem. */
static struct chan_tls *tls_side(const char *name, const char *ca, bool server)
{
	char cert[64], key[64], cafile[64];
	struct chan_tls_config cfg = {
	    .cert = cert, .key = key, .ca = cafile, .peer_name = server ? server_peer_name : NULL};
	struct hv_error err = {0};
	struct chan_tls *t;

	snprintf(cert, sizeof(cert), "%s.pem", name);
	snprintf(key, sizeof(key), "%s.key", name);
	snprintf(cafile, sizeof(cafile), "%s.pem", ca);
	cfg.cert = cpath(cert);
	cfg.key = cpath(key);
	cfg.ca = cpath(cafile);
	t = chan_tls_new(&cfg, server, &err);
	if (!t)
		fail_msg("chan_tls_new(%s): %s", name, err.msg);
	return t;
}

/* ---- a server thread: accept, then an optional job on the connection ---- */

struct server {
	struct chan_listener *l;
	struct chan_tls *tls;
	int (*job)(struct server *s, struct chan *c);
	bool accepted;
	int rc;
	struct hv_error err;
	char tls_version[16];
	uint64_t sent, received;
	int64_t ms; /* how long accept took to fail */
	pthread_t th;
};

static void *server_main(void *arg)
{
	struct server *s = arg;
	int64_t t0 = ms_now();
	struct chan *c = chan_accept(s->l, s->tls, TMO, &s->err);

	s->ms = ms_now() - t0;
	if (!c) {
		s->rc = -1;
		return NULL;
	}
	s->accepted = true;
	if (chan_tls_version(c))
		snprintf(s->tls_version, sizeof(s->tls_version), "%s", chan_tls_version(c));
	s->rc = s->job ? s->job(s, c) : 0;
	s->sent = chan_bytes_sent(c);
	s->received = chan_bytes_received(c);
	chan_close(c);
	return NULL;
}

/*
 * Listen on @text ("tcp:HOST:0" or "unix:NAME", NAME under the test's directory) and
 * start a server; @to receives the address a client connects to. NULL: cannot listen.
 */
static struct server *server_start(const char *text, struct chan_tls *tls,
                                   int (*job)(struct server *, struct chan *), char *to,
                                   size_t tolen)
{
	struct server *s = calloc(1, sizeof(*s));
	struct chan_addr a;
	struct hv_error err = {0};
	char full[CHAN_ADDR_MAX];

	assert_non_null(s);
	if (!strncmp(text, "unix:", 5))
		snprintf(full, sizeof(full), "unix:%s/%s", tmpdir, text + 5);
	else
		snprintf(full, sizeof(full), "%s", text);
	assert_int_equal(chan_addr_parse(full, &a, &err), 0);
	s->l = chan_listen(&a, &err);
	if (!s->l) {
		printf("    cannot listen on %s: %s\n", full, err.msg);
		free(s);
		return NULL;
	}
	if (a.tcp)
		snprintf(to, tolen, "%.*s:%u", (int)(strrchr(full, ':') - full), full,
		         chan_listener_port(s->l));
	else
		snprintf(to, tolen, "%s", full);
	s->tls = tls;
	s->job = job;
	assert_int_equal(pthread_create(&s->th, NULL, server_main, s), 0);
	return s;
}

static void server_wait(struct server *s)
{
	pthread_join(s->th, NULL);
	chan_listener_close(s->l);
}

static struct chan *connect_to(const char *text, struct chan_tls *tls, const char *host,
                               struct hv_error *err)
{
	struct chan_addr a;

	assert_int_equal(chan_addr_parse(text, &a, err), 0);
	return chan_connect(&a, tls, TMO, host, err);
}

/* ---- data with a pattern, in chunks that straddle the channel's buffer ---- */

static const size_t chunks[] = {1, 16, 4093, 65536, 262143, 262144, 262145, 1u << 20, 7, 3};
#define NCHUNKS (sizeof(chunks) / sizeof(chunks[0]))

static uint8_t pat(uint64_t i, unsigned seed)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)seed * 0xbf58476d1ce4e5b9ull;

	return (uint8_t)(x >> 56 ^ x >> 23);
}

static int send_pattern(struct chan *c, unsigned seed, struct hv_error *err)
{
	uint8_t *buf = malloc(1u << 20);
	uint64_t off = 0;
	int rc = 0;

	for (size_t k = 0; off < XFER && rc == 0; k++) {
		size_t n = chunks[k % NCHUNKS];

		if (n > XFER - off)
			n = XFER - off;
		for (size_t i = 0; i < n; i++)
			buf[i] = pat(off + i, seed);
		rc = chan_write(c, buf, n, err);
		off += n;
	}
	free(buf);
	return rc;
}

static int recv_pattern(struct chan *c, unsigned seed, struct hv_error *err)
{
	uint8_t *buf = malloc(1u << 20);
	uint64_t off = 0;
	int rc = 0;

	for (size_t k = 3; off < XFER && rc == 0; k++) {
		size_t n = chunks[k % NCHUNKS];

		if (n > XFER - off)
			n = XFER - off;
		rc = chan_read(c, buf, n, NULL, err);
		for (size_t i = 0; rc == 0 && i < n; i++)
			if (buf[i] != pat(off + i, seed))
				rc = hv_fail(err, EIO, "byte %llu differs",
				             (unsigned long long)(off + i));
		off += n;
	}
	free(buf);
	return rc;
}

/* The peer closes after the data: a clean end of input. */
static int expect_eof(struct chan *c, struct hv_error *err)
{
	bool eof;
	uint8_t b;

	if (chan_read(c, &b, 1, &eof, err) == 0)
		return hv_fail(err, EIO, "read a byte past the end");
	return eof ? 0 : -1;
}

static int job_echo(struct server *s, struct chan *c)
{
	if (recv_pattern(c, 1, &s->err) < 0 || send_pattern(c, 2, &s->err) < 0)
		return -1;
	return expect_eof(c, &s->err);
}

/* XFER bytes each way between a client and a server, checked byte for byte. */
static void round_trip(const char *where, struct chan_tls *stls, struct chan_tls *ctls,
                       const char *host)
{
	char to[CHAN_ADDR_MAX];
	struct hv_error err = {0};
	struct server *s = server_start(where, stls, job_echo, to, sizeof(to));
	struct chan *c;

	assert_non_null(s);
	c = connect_to(to, ctls, host, &err);
	if (!c)
		fail_msg("connect %s: %s", to, err.msg);
	if (send_pattern(c, 1, &err) < 0 || recv_pattern(c, 2, &err) < 0)
		fail_msg("client: %s", err.msg);
	if (ctls) {
		assert_string_equal(chan_tls_version(c), "TLSv1.3");
		assert_true(chan_bytes_sent(c) > XFER); /* records cost bytes */
	} else {
		assert_null(chan_tls_version(c));
		assert_int_equal(chan_bytes_sent(c), XFER);
		assert_int_equal(chan_bytes_received(c), XFER);
	}
	chan_close(c);
	server_wait(s);
	if (s->rc)
		fail_msg("server: %s", s->err.msg);
	if (stls)
		assert_string_equal(s->tls_version, "TLSv1.3");
	else
		assert_int_equal(s->received, XFER);
	free(s);
}

/* ---- addresses ---- */

static void test_addr_parse(void **state)
{
	static const struct {
		const char *s, *words;
	} bad[] = {
	    {"", "expected tcp:HOST:PORT or unix:PATH"},
	    {"udp:host:1", "expected tcp:HOST:PORT or unix:PATH"},
	    {"tcp:host", "expected tcp:HOST:PORT"},
	    {"tcp::4444", "empty host"},
	    {"tcp:host:", "bad port"},
	    {"tcp:host:65536", "bad port"},
	    {"tcp:host:12a", "bad port"},
	    {"tcp:host:-1", "bad port"},
	    {"tcp:::1:4444", "brackets"},
	    {"tcp:[::1]4444", "expected tcp:[IPV6-ADDRESS]:PORT"},
	    {"tcp:[::1:4444", "expected tcp:[IPV6-ADDRESS]:PORT"},
	    {"tcp:[]:4444", "empty host"},
	    {"tcp:[zz]:4444", "not an IPv6 address"},
	    {"unix:", "empty path"},
	};
	struct hv_error err;
	struct chan_addr a;
	char longpath[200];

	assert_int_equal(chan_addr_parse("tcp:localhost:4444", &a, &err), 0);
	assert_true(a.tcp);
	assert_string_equal(a.host, "localhost");
	assert_int_equal(a.port, 4444);
	assert_string_equal(a.text, "tcp:localhost:4444");
	assert_int_equal(chan_addr_parse("tcp:10.0.0.2:0", &a, &err), 0);
	assert_int_equal(a.family, AF_INET);
	assert_int_equal(a.port, 0);
	assert_int_equal(chan_addr_parse("tcp:[::1]:65535", &a, &err), 0);
	assert_int_equal(a.family, AF_INET6);
	assert_string_equal(a.host, "::1");
	assert_int_equal(a.port, 65535);
	assert_int_equal(chan_addr_parse("unix:/run/hv/mig.sock", &a, &err), 0);
	assert_false(a.tcp);
	assert_int_equal(a.family, AF_UNIX);
	assert_string_equal(a.path, "/run/hv/mig.sock");

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hv_error_clear(&err);
		assert_int_equal(chan_addr_parse(bad[i].s, &a, &err), -1);
		expect_words(err.msg, bad[i].words, NULL);
		if (*bad[i].s)
			assert_non_null(strstr(err.msg, bad[i].s)); /* names what was given */
	}
	memset(longpath, 'x', sizeof(longpath) - 1);
	memcpy(longpath, "unix:/", 6);
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(chan_addr_parse(longpath, &a, &err), -1);
	expect_words(err.msg, "path too long", NULL);
}

/* ---- plaintext ---- */

static void test_tcp4_round_trip(void **state)
{
	round_trip("tcp:127.0.0.1:0", NULL, NULL, NULL);
}

static void test_tcp6_round_trip(void **state)
{
	struct chan_addr a;
	struct chan_listener *l;
	struct chan_tls *st, *ct;
	struct hv_error err;

	assert_int_equal(chan_addr_parse("tcp:[::1]:0", &a, &err), 0);
	if (!(l = chan_listen(&a, &err))) {
		printf("    no IPv6 loopback here (%s)\n", err.msg);
		skip();
	}
	chan_listener_close(l);
	round_trip("tcp:[::1]:0", NULL, NULL, NULL);
	/* The address as the host: checked against the certificate's IP:::1 entry. */
	st = tls_side("server", "ca", true);
	ct = tls_side("client", "ca", false);
	round_trip("tcp:[::1]:0", st, ct, NULL);
	chan_tls_free(st);
	chan_tls_free(ct);
}

static void test_unix_round_trip(void **state)
{
	round_trip("unix:rt.sock", NULL, NULL, NULL);
}

/* A socket file left by a dead process is replaced; a live listener's is not. */
static void test_unix_stale_and_busy(void **state)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct chan_listener *l, *l2;
	struct chan_addr a;
	struct hv_error err;
	char text[CHAN_ADDR_MAX];
	int fd;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/stale.sock", tmpdir);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd); /* the file stays, nobody listens */
	snprintf(text, sizeof(text), "unix:%s", sun.sun_path);
	assert_int_equal(chan_addr_parse(text, &a, &err), 0);
	l = chan_listen(&a, &err);
	if (!l)
		fail_msg("%s", err.msg);
	assert_null(l2 = chan_listen(&a, &err));
	expect_words(err.msg, "address in use", NULL);
	chan_listener_close(l);
	assert_int_equal(access(sun.sun_path, F_OK), -1); /* removed: it was ours */
}

/* ---- TLS ---- */

static void test_tls_mutual(void **state)
{
	struct chan_tls *s = tls_side("server", "ca", true), *c = tls_side("client", "ca", false);

	round_trip("tcp:127.0.0.1:0", s, c, NULL);        /* checked as IP:127.0.0.1 */
	round_trip("tcp:127.0.0.1:0", s, c, "localhost"); /* checked as DNS:localhost */
	round_trip("unix:tls.sock", s, c, "localhost");
	chan_tls_free(s);
	chan_tls_free(c);
}

/* Connect a TLS client to a TLS server and expect both to fail; return their errors. */
static void tls_refused(const char *srv, const char *srv_ca, const char *cli, const char *cli_ca,
                        const char *host, struct hv_error *serr, struct hv_error *cerr)
{
	struct chan_tls *st = tls_side(srv, srv_ca, true), *ct = tls_side(cli, cli_ca, false);
	char to[CHAN_ADDR_MAX];
	struct server *s = server_start("tcp:127.0.0.1:0", st, NULL, to, sizeof(to));
	int64_t t0 = ms_now();
	struct chan *c;

	assert_non_null(s);
	c = connect_to(to, ct, host, cerr);
	if (c)
		fail_msg("connect %s with %s/%s against %s/%s succeeded", to, cli, cli_ca, srv,
		         srv_ca);
	server_wait(s);
	assert_true(ms_now() - t0 < PROMPT);
	assert_false(s->accepted);
	*serr = s->err;
	free(s);
	chan_tls_free(st);
	chan_tls_free(ct);
}

static void test_tls_wrong_ca(void **state)
{
	struct hv_error se, ce;

	/* The server's certificate is from a CA the client does not trust... */
	tls_refused("server2", "ca", "client", "ca", NULL, &se, &ce);
	expect_words(ce.msg, "tcp:127.0.0.1:", "TLS handshake", "certificate verify failed",
	             "unable to get local issuer certificate", NULL);
	expect_words(se.msg, "TLS handshake", "rejected our certificate", "unknown ca", NULL);
	/* ...and the client's from a CA the server does not trust. */
	tls_refused("server", "ca", "client2", "ca", NULL, &se, &ce);
	expect_words(se.msg, "TLS handshake", "certificate verify failed",
	             "unable to get local issuer certificate", NULL);
	expect_words(ce.msg, "TLS handshake", "rejected our certificate", "unknown ca", NULL);
}

static void test_tls_wrong_host(void **state)
{
	struct hv_error se, ce;

	tls_refused("wronghost", "ca", "client", "ca", "localhost", &se, &ce);
	expect_words(ce.msg, "certificate verify failed", "hostname mismatch", "localhost", NULL);
	expect_words(se.msg, "rejected our certificate", NULL);
	/* Without a name the address is what the certificate must be for. */
	tls_refused("wronghost", "ca", "client", "ca", NULL, &se, &ce);
	expect_words(ce.msg, "certificate verify failed", "IP address mismatch", "127.0.0.1", NULL);
}

/* A server that names the client it expects lets in only that one. */
static void test_tls_client_name(void **state)
{
	struct chan_tls *s, *c = tls_side("client", "ca", false);
	struct hv_error se, ce;

	server_peer_name = "source.hv.test";
	s = tls_side("server", "ca", true);
	round_trip("tcp:127.0.0.1:0", s, c, NULL);
	chan_tls_free(s);
	chan_tls_free(c);
	server_peer_name = "other.hv.test";
	tls_refused("server", "ca", "client", "ca", NULL, &se, &ce);
	server_peer_name = NULL;
	expect_words(se.msg, "certificate verify failed", "hostname mismatch",
	             "not for other.hv.test", NULL);
	expect_words(ce.msg, "rejected our certificate", NULL);
}

static void test_tls_expired(void **state)
{
	struct hv_error se, ce;

	tls_refused("expired", "ca", "client", "ca", NULL, &se, &ce);
	expect_words(ce.msg, "certificate verify failed", "certificate has expired", NULL);
	expect_words(se.msg, "rejected our certificate", "expired", NULL);
}

/* A client that offers no certificate (any TLS client, here plain OpenSSL) is refused. */
static void test_tls_client_without_cert(void **state)
{
	struct chan_tls *st = tls_side("server", "ca", true);
	char to[CHAN_ADDR_MAX], b, why[256];
	struct server *s = server_start("tcp:127.0.0.1:0", st, NULL, to, sizeof(to));
	struct sockaddr_in sin = {.sin_family = AF_INET};
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;
	int fd, r;

	assert_non_null(s);
	sin.sin_port = htons((uint16_t)atoi(strrchr(to, ':') + 1));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(SSL_CTX_load_verify_locations(ctx, cpath("ca.pem"), NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	r = SSL_connect(ssl); /* TLS 1.3: may succeed; the refusal comes with the next read */
	if (r == 1)
		r = SSL_read(ssl, &b, 1);
	assert_true(r <= 0);
	ERR_error_string_n(ERR_peek_last_error(), why, sizeof(why));
	expect_words(why, "certificate required", NULL);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	server_wait(s);
	assert_false(s->accepted);
	expect_words(s->err.msg, "TLS handshake", "peer did not return a certificate", NULL);
	free(s);
	chan_tls_free(st);
}

/* A plaintext client meets a TLS server: both say so, neither hangs. */
static void test_plain_client_tls_server(void **state)
{
	struct chan_tls *st = tls_side("server", "ca", true);
	char to[CHAN_ADDR_MAX], buf[16];
	struct server *s = server_start("tcp:127.0.0.1:0", st, NULL, to, sizeof(to));
	struct hv_error err = {0};
	int64_t t0 = ms_now();
	struct chan *c;
	bool eof;

	assert_non_null(s);
	c = connect_to(to, NULL, NULL, &err);
	assert_non_null(c);
	assert_int_equal(chan_write(c, "HVSTATE\n\1\0\0\0\4\3\2\1", 16, &err), 0);
	assert_int_equal(chan_read(c, buf, sizeof(buf), &eof, &err), -1);
	expect_words(err.msg, "peer speaks TLS", "not configured", NULL);
	chan_close(c);
	server_wait(s);
	assert_true(ms_now() - t0 < PROMPT);
	assert_false(s->accepted);
	expect_words(s->err.msg, "TLS handshake", "peer did not speak TLS", NULL);
	free(s);
	chan_tls_free(st);
}

static int job_read_header(struct server *s, struct chan *c)
{
	char buf[16];

	return chan_read(c, buf, sizeof(buf), NULL, &s->err);
}

/* A TLS client meets a plaintext server: the same, the other way round. */
static void test_tls_client_plain_server(void **state)
{
	struct chan_tls *ct = tls_side("client", "ca", false);
	char to[CHAN_ADDR_MAX];
	struct server *s = server_start("tcp:127.0.0.1:0", NULL, job_read_header, to, sizeof(to));
	struct hv_error err = {0};
	int64_t t0 = ms_now();

	assert_non_null(s);
	assert_null(connect_to(to, ct, NULL, &err));
	expect_words(err.msg, "TLS handshake", "closed by peer", "is TLS configured there", NULL);
	server_wait(s);
	assert_true(ms_now() - t0 < PROMPT);
	assert_int_equal(s->rc, -1);
	expect_words(s->err.msg, "peer speaks TLS", "not configured", NULL);
	free(s);
	chan_tls_free(ct);
}

static void test_tls_config_errors(void **state)
{
	struct chan_tls_config cfg = {
	    .cert = cpath("server.pem"), .key = cpath("server.key"), .ca = "/nonexistent/ca.pem"};
	struct hv_error err;
	char notpem[600];
	FILE *f;

	assert_null(chan_tls_new(&cfg, true, &err));
	expect_words(err.msg, "/nonexistent/ca.pem", "No such file", NULL);
	cfg.ca = cpath("ca.pem");
	cfg.key = cpath("client.key");
	assert_null(chan_tls_new(&cfg, true, &err));
	expect_words(err.msg, "client.key", "does not match", "server.pem", NULL);
	cfg.key = NULL;
	assert_null(chan_tls_new(&cfg, true, &err));
	expect_words(err.msg, "required together", NULL);
	snprintf(notpem, sizeof(notpem), "%s/notpem", tmpdir);
	f = fopen(notpem, "w");
	fputs("not a certificate\n", f);
	fclose(f);
	cfg.key = cpath("server.key");
	cfg.cert = notpem;
	assert_null(chan_tls_new(&cfg, false, &err));
	expect_words(err.msg, "notpem", "not a PEM certificate", NULL);
	cfg.cert = cpath("server.pem");
	cfg.ca = notpem;
	assert_null(chan_tls_new(&cfg, false, &err));
	expect_words(err.msg, "notpem", "CA file", NULL);
}

/* ---- abort and timeouts ---- */

struct blocked {
	struct chan *c;
	int rc;
	struct hv_error err;
	int64_t ms;
};

static void *read_blocked(void *arg)
{
	struct blocked *b = arg;
	int64_t t0 = ms_now();
	char buf[16];

	b->rc = chan_read(b->c, buf, sizeof(buf), NULL, &b->err);
	b->ms = ms_now() - t0;
	return NULL;
}

static int job_wait_eof(struct server *s, struct chan *c)
{
	return expect_eof(c, &s->err);
}

/* An operator aborts a migration whose receiver is blocked: the read fails at once. */
static void test_abort_unblocks_read(void **state)
{
	struct chan_tls *st = tls_side("server", "ca", true), *ct = tls_side("client", "ca", false);

	for (int tls = 0; tls < 2; tls++) {
		char to[CHAN_ADDR_MAX];
		struct server *s = server_start(tls ? "tcp:127.0.0.1:0" : "unix:abort.sock",
		                                tls ? st : NULL, job_wait_eof, to, sizeof(to));
		struct blocked b = {0};
		struct hv_error err;
		pthread_t th;

		assert_non_null(s);
		b.c = connect_to(to, tls ? ct : NULL, NULL, &err);
		assert_non_null(b.c);
		pthread_create(&th, NULL, read_blocked, &b);
		usleep(100 * 1000);
		chan_abort(b.c);
		pthread_join(th, NULL);
		assert_int_equal(b.rc, -1);
		assert_int_equal(b.err.code, ECANCELED);
		expect_words(b.err.msg, to, "aborted", NULL);
		assert_true(b.ms < PROMPT);
		/* Later calls fail too, and the peer has seen the connection end. */
		assert_int_equal(chan_write(b.c, "x", 1, &err), -1);
		assert_int_equal(err.code, ECANCELED);
		server_wait(s);
		assert_true(s->ms < PROMPT);
		chan_close(b.c);
		free(s);
	}
	chan_tls_free(st);
	chan_tls_free(ct);
}

static void test_read_timeout(void **state)
{
	char to[CHAN_ADDR_MAX], buf[4];
	struct server *s = server_start("tcp:127.0.0.1:0", NULL, job_wait_eof, to, sizeof(to));
	struct hv_error err;
	struct chan *c;
	int64_t t0;

	assert_non_null(s);
	c = connect_to(to, NULL, NULL, &err);
	assert_non_null(c);
	chan_set_timeout(c, 200);
	t0 = ms_now();
	assert_int_equal(chan_read(c, buf, sizeof(buf), NULL, &err), -1);
	assert_true(ms_now() - t0 >= 190);
	assert_true(ms_now() - t0 < PROMPT);
	assert_int_equal(err.code, ETIMEDOUT);
	expect_words(err.msg, "receive", "timed out after 200 ms", NULL);
	chan_close(c);
	server_wait(s);
	free(s);
}

struct accepting {
	struct chan_listener *l;
	struct chan_tls *tls;
	struct chan *c;
	struct hv_error err;
	int64_t ms;
};

static void *accept_blocked(void *arg)
{
	struct accepting *a = arg;
	int64_t t0 = ms_now();

	a->c = chan_accept(a->l, a->tls, -1, &a->err);
	a->ms = ms_now() - t0;
	return NULL;
}

/* Cancelling an incoming migration ends the wait for a connection, or for its handshake. */
static void test_listener_abort(void **state)
{
	struct chan_tls *st = tls_side("server", "ca", true);
	static const char *const where[] = {"tcp:127.0.0.1:0", "unix:la.sock", "tcp:127.0.0.1:0"};

	for (int i = 0; i < 3; i++) {
		struct accepting a = {0};
		struct chan_addr addr;
		struct hv_error err;
		char text[CHAN_ADDR_MAX], to[CHAN_ADDR_MAX];
		struct chan *c = NULL;
		pthread_t th;

		if (i == 1)
			snprintf(text, sizeof(text), "unix:%s/la.sock", tmpdir);
		else
			snprintf(text, sizeof(text), "%s", where[i]);
		assert_int_equal(chan_addr_parse(text, &addr, &err), 0);
		a.l = chan_listen(&addr, &err);
		assert_non_null(a.l);
		a.tls = i == 2 ? st : NULL;
		/* Accept with a timeout that has nothing to accept. */
		assert_null(chan_accept(a.l, NULL, 50, &err));
		expect_words(err.msg, "accept", "timed out after 50 ms", NULL);

		pthread_create(&th, NULL, accept_blocked, &a);
		if (i == 2) { /* a client that connects and then says nothing */
			snprintf(to, sizeof(to), "tcp:127.0.0.1:%u", chan_listener_port(a.l));
			c = connect_to(to, NULL, NULL, &err);
			assert_non_null(c);
		}
		usleep(100 * 1000);
		chan_listener_abort(a.l);
		pthread_join(th, NULL);
		assert_null(a.c);
		expect_words(a.err.msg, "aborted", NULL);
		assert_true(a.ms < 100 + PROMPT);
		chan_close(c);
		chan_listener_close(a.l);
	}
	chan_tls_free(st);
}

/* ---- a state stream through the channel ---- */

static const size_t rec_sizes[] = {0, 16, 4096, (1u << 20) + 3, STREAM_MAX_RECORD};
#define NRECS (sizeof(rec_sizes) / sizeof(rec_sizes[0]))

static int job_stream_read(struct server *s, struct chan *c)
{
	struct stream st;
	struct record rec;
	size_t n = 0;
	int r;

	if (stream_open_read_io(&st, &chan_stream_io, c, chan_peer(c), &s->err) < 0)
		return -1;
	while ((r = stream_read(&st, &rec, &s->err)) == 1) {
		if (n >= NRECS || rec.type != REC_DEVICE || rec.len != rec_sizes[n]) {
			r = hv_fail(&s->err, EIO, "record %zu: type %u length %u", n, rec.type,
			            rec.len);
			break;
		}
		for (size_t i = 0; i < rec.len; i++)
			if (rec.body[i] != pat(i, (unsigned)n)) {
				r = hv_fail(&s->err, EIO, "record %zu: byte %zu differs", n, i);
				break;
			}
		if (r < 0)
			break;
		n++;
	}
	stream_close(&st);
	if (r == 0 && n != NRECS)
		return hv_fail(&s->err, EIO, "%zu records, expected %zu", n, NRECS);
	return r;
}

static void test_stream_through_chan(void **state)
{
	struct chan_tls *st = tls_side("server", "ca", true), *ct = tls_side("client", "ca", false);
	char to[CHAN_ADDR_MAX];
	struct server *s = server_start("tcp:127.0.0.1:0", st, job_stream_read, to, sizeof(to));
	struct hv_error err;
	struct stream out;
	uint8_t *body = malloc(STREAM_MAX_RECORD);
	struct chan *c;

	assert_non_null(s);
	c = connect_to(to, ct, NULL, &err);
	assert_non_null(c);
	assert_int_equal(stream_open_write_io(&out, &chan_stream_io, c, chan_peer(c), &err), 0);
	for (size_t n = 0; n < NRECS; n++) {
		const void *parts[] = {body};
		size_t lens[] = {rec_sizes[n]};

		for (size_t i = 0; i < rec_sizes[n]; i++)
			body[i] = pat(i, (unsigned)n);
		if (stream_write_record(&out, REC_DEVICE, parts, lens, 1, &err) < 0)
			fail_msg("%s", err.msg);
	}
	if (stream_write_end(&out, &err) < 0)
		fail_msg("%s", err.msg);
	stream_close(&out);
	chan_close(c);
	server_wait(s);
	if (s->rc)
		fail_msg("server: %s", s->err.msg);
	free(s);
	free(body);
	chan_tls_free(st);
	chan_tls_free(ct);
}

static int setup(void **state)
{
	certs = getenv("HV_TEST_CERTS");
	if (!certs) {
		fprintf(stderr, "HV_TEST_CERTS is not set (the directory mkcerts.sh wrote)\n");
		return -1;
	}
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_addr_parse),
	    cmocka_unit_test(test_tcp4_round_trip),
	    cmocka_unit_test(test_tcp6_round_trip),
	    cmocka_unit_test(test_unix_round_trip),
	    cmocka_unit_test(test_unix_stale_and_busy),
	    cmocka_unit_test(test_tls_mutual),
	    cmocka_unit_test(test_tls_wrong_ca),
	    cmocka_unit_test(test_tls_wrong_host),
	    cmocka_unit_test(test_tls_expired),
	    cmocka_unit_test(test_tls_client_without_cert),
	    cmocka_unit_test(test_tls_client_name),
	    cmocka_unit_test(test_plain_client_tls_server),
	    cmocka_unit_test(test_tls_client_plain_server),
	    cmocka_unit_test(test_tls_config_errors),
	    cmocka_unit_test(test_abort_unblocks_read),
	    cmocka_unit_test(test_read_timeout),
	    cmocka_unit_test(test_listener_abort),
	    cmocka_unit_test(test_stream_through_chan),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
