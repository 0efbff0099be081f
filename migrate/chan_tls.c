/*
 * chan_tls.c - TLS for migration channels: contexts, the record pump on memory BIOs, and
 * the words for TLS failures. Everything that touches OpenSSL is here; chan.c only moves
 * bytes.
 *
 * A context is built once per side and checked eagerly (every file readable, the key the
 * certificate's, the CA file holding a certificate), so that a wrong path fails when the
 * command starts, naming the file, rather than as an obscure handshake error later.
 *
 * OpenSSL never sees the socket. SSL_write encrypts into a memory BIO that we drain into
 * a buffer and hand to chan_net_send (io_uring); what chan_net_recv receives is written
 * into the read BIO for SSL_read. So TLS gets the channel's timeouts, aborts and byte
 * counts for free, and no OpenSSL call can block.
 *
 * Failures become one line a user can act on: OpenSSL's reason, the verification result
 * behind "certificate verify failed", whether the peer refused our certificate (an
 * alert), or whether it spoke TLS at all.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "migrate/chan.h"

#define TLS_BUF       (256u << 10)  /* ciphertext on its way in or out */
#define TLS_CHUNK     (15u * 16384) /* plaintext per SSL_write: its records fit TLS_BUF */
#define CLOSE_WAIT_MS 1000          /* for close_notify and alerts to a dying peer */

struct chan_tls {
	SSL_CTX *ctx;
	bool server;
	char *hostname;  /* client: from the configuration, may be NULL */
	char *peer_name; /* server: the client certificate's required name, may be NULL */
};

/* One connection's TLS state. */
struct chan_tls_conn {
	SSL *ssl;
	uint8_t *net; /* TLS_BUF */
	int first;    /* the first byte the peer sent, -1 before: tells TLS from plaintext */
	bool up;      /* handshake done, no fatal error since: close_notify makes sense */
	bool ticket;  /* client: the server sent a session ticket, so it accepted us */
};

/* The most recent OpenSSL error as a phrase ("no start line"); clears the queue. */
static const char *ssl_reason(char *buf, size_t n)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	if (r)
		snprintf(buf, n, "%s", r);
	else if (e)
		ERR_error_string_n(e, buf, n);
	else
		snprintf(buf, n, "unknown error");
	ERR_clear_error();
	return buf;
}

/* Keys must not be encrypted: without this, OpenSSL would prompt on the terminal. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

static FILE *open_pem(const char *what, const char *path, struct hv_error *err)
{
	FILE *f = fopen(path, "r");

	if (!f)
		hv_fail(err, errno, "TLS %s %s: %s", what, path, strerror(errno));
	return f;
}

/* Load the certificate and key, check they belong together, and install them. */
static int load_identity(SSL_CTX *ctx, const struct chan_tls_config *cfg, struct hv_error *err)
{
	char why[256];
	X509 *x = NULL;
	EVP_PKEY *k = NULL;
	FILE *f;
	int rc = -1;

	if (!(f = open_pem("certificate", cfg->cert, err)))
		return -1;
	x = PEM_read_X509(f, NULL, no_password, NULL);
	fclose(f);
	if (!x) {
		hv_fail(err, EINVAL, "TLS certificate %s: not a PEM certificate (%s)", cfg->cert,
		        ssl_reason(why, sizeof(why)));
		goto out;
	}
	if (!(f = open_pem("key", cfg->key, err)))
		goto out;
	k = PEM_read_PrivateKey(f, NULL, no_password, NULL);
	fclose(f);
	if (!k) {
		hv_fail(err, EINVAL, "TLS key %s: not an unencrypted PEM private key (%s)",
		        cfg->key, ssl_reason(why, sizeof(why)));
		goto out;
	}
	if (X509_check_private_key(x, k) != 1) {
		ERR_clear_error();
		hv_fail(err, EINVAL, "TLS key %s does not match certificate %s", cfg->key,
		        cfg->cert);
		goto out;
	}
	/* The chain file may hold intermediates after the leaf. */
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, k) != 1) {
		hv_fail(err, EINVAL, "TLS certificate %s: %s", cfg->cert,
		        ssl_reason(why, sizeof(why)));
		goto out;
	}
	rc = 0;
out:
	X509_free(x);
	EVP_PKEY_free(k);
	return rc;
}

/*
 * A client knows the server accepted its certificate once a session ticket arrives: in
 * TLS 1.3 the client's handshake ends before the server has checked it (handshake() waits).
 */
static int got_ticket(SSL *ssl, SSL_SESSION *sess)
{
	bool *ticket = SSL_get_app_data(ssl);

	if (ticket)
		*ticket = true;
	return 0; /* we keep no reference to @sess */
}

struct chan_tls *chan_tls_new(const struct chan_tls_config *cfg, bool server, struct hv_error *err)
{
	struct chan_tls *t;
	char why[256];
	FILE *f;

	if (!cfg->cert || !cfg->key || !cfg->ca) {
		hv_fail(err, EINVAL, "TLS: certificate, key and CA file are required together");
		return NULL;
	}
	if (!(f = open_pem("CA file", cfg->ca, err)))
		return NULL;
	fclose(f);
	t = calloc(1, sizeof(*t));
	if (!t || !(t->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()))) {
		hv_fail(err, ENOMEM, "TLS: cannot create a context (%s)",
		        ssl_reason(why, sizeof(why)));
		goto fail;
	}
	t->server = server;
	if ((cfg->hostname && !(t->hostname = strdup(cfg->hostname))) ||
	    (cfg->peer_name && !(t->peer_name = strdup(cfg->peer_name)))) {
		hv_fail(err, ENOMEM, "TLS: out of memory");
		goto fail;
	}
	SSL_CTX_set_default_passwd_cb(t->ctx, no_password);
	if (SSL_CTX_set_min_proto_version(t->ctx, TLS1_3_VERSION) != 1) {
		hv_fail(err, ENOTSUP, "TLS: this OpenSSL has no TLS 1.3");
		goto fail;
	}
	if (load_identity(t->ctx, cfg, err) < 0)
		goto fail;
	if (SSL_CTX_load_verify_locations(t->ctx, cfg->ca, NULL) != 1) {
		hv_fail(err, EINVAL, "TLS CA file %s: no PEM certificate (%s)", cfg->ca,
		        ssl_reason(why, sizeof(why)));
		goto fail;
	}
	if (server) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca);

		if (names)
			SSL_CTX_set_client_CA_list(t->ctx, names);
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
		SSL_CTX_set_num_tickets(t->ctx, 1); /* the client waits for it (got_ticket) */
		/* Without one, a client resuming the session would fail the handshake. */
		SSL_CTX_set_session_id_context(t->ctx, (const unsigned char *)"hv-migrate", 10);
	} else {
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_CLIENT |
		                                           SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(t->ctx, got_ticket);
	}
	ERR_clear_error();
	return t;
fail:
	ERR_clear_error();
	chan_tls_free(t);
	return NULL;
}

void chan_tls_free(struct chan_tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	free(t->hostname);
	free(t->peer_name);
	free(t);
}

bool chan_tls_is_server(const struct chan_tls *t)
{
	return t->server;
}

/* An SSL on a pair of memory BIOs; a client's checks the server's name or address. */
static SSL *ssl_new(struct chan_tls *t, const char *hostname, const char *addr_host, bool *ticket,
                    const char *peer, struct hv_error *err)
{
	SSL *ssl = SSL_new(t->ctx);
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
	unsigned char ip[16];
	const char *host;
	char why[256];

	if (!ssl || !rb || !wb) {
		hv_fail(err, ENOMEM, "%s: TLS: %s", peer, ssl_reason(why, sizeof(why)));
		goto fail;
	}
	/* An empty read BIO means "wait for more", never end of input. */
	BIO_set_mem_eof_return(rb, -1);
	SSL_set_bio(ssl, rb, wb);
	rb = wb = NULL;
	SSL_set_app_data(ssl, ticket);
	if (t->server) {
		SSL_set_accept_state(ssl);
		/* The CA alone lets in any machine it certified; this narrows it to one name. */
		if (t->peer_name) {
			host = t->peer_name;
			SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			if (SSL_set1_host(ssl, host) != 1)
				goto bad_host;
		}
		return ssl;
	}
	SSL_set_connect_state(ssl);
	host = hostname ? hostname : t->hostname ? t->hostname : addr_host;
	if (!host || !*host) {
		hv_fail(err, EINVAL, "%s: TLS: no host name to check the certificate against",
		        peer);
		goto fail;
	}
	if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1) {
		/* An address is matched against the certificate's IP entries, not its names. */
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1)
			goto bad_host;
	} else {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(ssl, host) != 1 || SSL_set_tlsext_host_name(ssl, host) != 1)
			goto bad_host;
	}
	return ssl;
bad_host:
	hv_fail(err, EINVAL, "%s: TLS: bad host name '%s' (%s)", peer, host,
	        ssl_reason(why, sizeof(why)));
fail:
	BIO_free(rb);
	BIO_free(wb);
	SSL_free(ssl);
	return NULL;
}

/* Alerts that say the peer did not like our certificate. */
static bool cert_alert(int reason)
{
	switch (reason - SSL_AD_REASON_OFFSET) {
	case SSL_AD_BAD_CERTIFICATE:
	case SSL_AD_UNSUPPORTED_CERTIFICATE:
	case SSL_AD_CERTIFICATE_REVOKED:
	case SSL_AD_CERTIFICATE_EXPIRED:
	case SSL_AD_CERTIFICATE_UNKNOWN:
	case SSL_AD_UNKNOWN_CA:
	case SSL_AD_CERTIFICATE_REQUIRED: return true;
	}
	return false;
}

/* One phrase for why an SSL call failed with @ret; clears the error queue. */
static void why_failed(const struct chan_tls_conn *t, int ret, char *buf, size_t n)
{
	int e = SSL_get_error(t->ssl, ret);
	unsigned long code = ERR_peek_last_error();
	int reason = ERR_GET_REASON(code);
	char why[256];

	if (code)
		ssl_reason(why, sizeof(why));
	else
		snprintf(why, sizeof(why), "%s",
		         e == SSL_ERROR_SYSCALL ? "I/O error" : "internal error");

	if (t->first >= 0 && t->first != SSL3_RT_HANDSHAKE && t->first != SSL3_RT_ALERT) {
		/* Every TLS peer's first record is a handshake or an alert. */
		snprintf(buf, n, "peer did not speak TLS (%s)", why);
	} else if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
		long v = SSL_get_verify_result(t->ssl);
		X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
		char *ip = X509_VERIFY_PARAM_get1_ip_asc(param);
		const char *want = v == X509_V_ERR_HOSTNAME_MISMATCH
		                       ? X509_VERIFY_PARAM_get0_host(param, 0)
		                   : v == X509_V_ERR_IP_ADDRESS_MISMATCH ? ip
		                                                         : NULL;

		snprintf(buf, n, "%s (%s%s%s)", why, X509_verify_cert_error_string(v),
		         want ? ": the certificate is not for " : "", want ? want : "");
		OPENSSL_free(ip);
	} else if (reason > SSL_AD_REASON_OFFSET && cert_alert(reason)) {
		snprintf(buf, n, "peer rejected our certificate (%s)", why);
	} else if (reason > SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256) {
		snprintf(buf, n, "peer sent an alert (%s)", why);
	} else {
		snprintf(buf, n, "%s", why);
	}
	ERR_clear_error();
}

static int tls_fail(struct chan_tls_conn *t, struct chan *c, const char *what, int ret,
                    struct hv_error *err)
{
	char why[400];

	why_failed(t, ret, why, sizeof(why));
	t->up = false;
	return hv_fail(err, EPROTO, "%s: %s: %s", chan_peer(c), what, why);
}

/* Send whatever OpenSSL has encrypted into the write BIO. */
static int flush(struct chan_tls_conn *t, struct chan *c, int64_t dl, struct hv_error *err)
{
	BIO *w = SSL_get_wbio(t->ssl);
	size_t n;

	while ((n = BIO_ctrl_pending(w)) > 0) {
		int k = BIO_read(w, t->net, (int)(n < TLS_BUF ? n : TLS_BUF));

		if (k <= 0)
			return hv_fail(err, EIO, "%s: TLS: cannot drain the write buffer",
			               chan_peer(c));
		if (chan_net_send(c, t->net, (size_t)k, dl, err) < 0)
			return -1;
	}
	return 0;
}

/* Receive ciphertext into the read BIO: > 0, 0 at end of input, -1. */
static int pull(struct chan_tls_conn *t, struct chan *c, int64_t dl, const char *what,
                struct hv_error *err)
{
	int n = chan_net_recv(c, t->net, TLS_BUF, dl, what, err);

	if (n > 0 && t->first < 0)
		t->first = t->net[0];
	if (n > 0 && BIO_write(SSL_get_rbio(t->ssl), t->net, n) != n)
		return hv_fail(err, ENOMEM, "%s: TLS: out of memory", chan_peer(c));
	return n;
}

/*
 * After a failed handshake, let the peer know why (best effort, briefly): OpenSSL's alert,
 * or - to a peer that spoke no TLS, which OpenSSL leaves without one - a protocol_version
 * alert of our own, which a plaintext chan recognises.
 */
static void tell_peer(struct chan_tls_conn *t, struct chan *c)
{
	/* A record: alert, version 3.3, length 2; the alert: fatal, protocol_version. */
	static const uint8_t alert[] = {21, 3, 3, 0, 2, 2, 70};
	int64_t dl = chan_deadline(CLOSE_WAIT_MS);

	if (BIO_ctrl_pending(SSL_get_wbio(t->ssl)))
		flush(t, c, dl, NULL);
	else if (t->first >= 0 && t->first != SSL3_RT_HANDSHAKE && t->first != SSL3_RT_ALERT)
		chan_net_send(c, alert, sizeof(alert), dl, NULL);
}

/*
 * One step of the handshake that needs the peer: send what OpenSSL wrote, receive more.
 * A peer that closes the connection before its first byte is most likely not speaking TLS.
 */
static int exchange(struct chan_tls_conn *t, struct chan *c, int64_t dl, struct hv_error *err)
{
	int n;

	if (flush(t, c, dl, err) < 0)
		return -1;
	n = pull(t, c, dl, "TLS handshake", err);
	if (n == 0)
		return hv_fail(err, ECONNRESET, "%s: TLS handshake: connection closed by peer%s",
		               chan_peer(c), t->first < 0 ? " (is TLS configured there?)" : "");
	return n < 0 ? -1 : 0;
}

static int handshake(struct chan_tls_conn *t, struct chan *c, bool server, int64_t dl,
                     uint8_t *early, size_t cap, size_t *early_len, struct hv_error *err)
{
	int r;

	ERR_clear_error();
	while ((r = SSL_do_handshake(t->ssl)) != 1) {
		if (SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ) {
			tls_fail(t, c, "TLS handshake", r, err);
			tell_peer(t, c);
			return -1;
		}
		if (exchange(t, c, dl, err) < 0)
			return -1;
		ERR_clear_error();
	}
	if (flush(t, c, dl, err) < 0)
		return -1;
	t->up = true;
	/*
	 * In TLS 1.3 the client is done before the server has checked the client's
	 * certificate. Wait for the session ticket the server sends once it has, so that a
	 * rejection fails here, with the server's reason, and not at some later read.
	 */
	while (!server && !t->ticket && *early_len < cap) {
		ERR_clear_error();
		r = SSL_read(t->ssl, early + *early_len, (int)(cap - *early_len));
		if (r > 0) {
			*early_len += (size_t)r; /* the server's first data: chan_read's */
			continue;
		}
		r = SSL_get_error(t->ssl, r);
		if (r == SSL_ERROR_ZERO_RETURN)
			break; /* closed at once: the next chan_read reports it */
		if (r != SSL_ERROR_WANT_READ)
			return tls_fail(t, c, "TLS handshake", -1, err);
		if (!t->ticket && exchange(t, c, dl, err) < 0)
			return -1;
	}
	return 0;
}

struct chan_tls_conn *chan_tls_start(struct chan *c, struct chan_tls *tls, const char *hostname,
                                     const char *addr_host, int64_t deadline, uint8_t *early,
                                     size_t cap, size_t *early_len, struct hv_error *err)
{
	struct chan_tls_conn *t = calloc(1, sizeof(*t));

	if (!t || !(t->net = malloc(TLS_BUF))) {
		hv_fail(err, ENOMEM, "%s: out of memory", chan_peer(c));
		goto fail;
	}
	t->first = -1;
	t->ssl = ssl_new(tls, hostname, addr_host, &t->ticket, chan_peer(c), err);
	if (t->ssl && handshake(t, c, tls->server, deadline, early, cap, early_len, err) == 0)
		return t;
fail:
	chan_tls_end(t, c, false);
	return NULL;
}

int chan_tls_read(struct chan_tls_conn *t, struct chan *c, void *p, size_t cap, int64_t deadline,
                  struct hv_error *err)
{
	int r;

	if (cap > INT_MAX)
		cap = INT_MAX;
	for (;;) {
		ERR_clear_error();
		r = SSL_read(t->ssl, p, (int)cap);
		if (r > 0)
			return r;
		switch (SSL_get_error(t->ssl, r)) {
		case SSL_ERROR_ZERO_RETURN: return 0;
		case SSL_ERROR_WANT_READ: break;
		default: return tls_fail(t, c, "receive", r, err);
		}
		if (flush(t, c, deadline, err) < 0)
			return -1;
		r = pull(t, c, deadline, "receive", err);
		if (r < 0)
			return -1;
		if (r == 0)
			return hv_fail(err, ECONNRESET,
			               "%s: receive: connection closed without TLS close_notify",
			               chan_peer(c));
	}
}

int chan_tls_write(struct chan_tls_conn *t, struct chan *c, const void *p, size_t n,
                   int64_t deadline, struct hv_error *err)
{
	const uint8_t *b = p;

	while (n) {
		int r;

		ERR_clear_error();
		r = SSL_write(t->ssl, b, (int)(n < TLS_CHUNK ? n : TLS_CHUNK));
		if (r <= 0)
			return tls_fail(t, c, "send", r, err);
		if (flush(t, c, deadline, err) < 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

bool chan_tls_pending(const struct chan_tls_conn *t)
{
	return SSL_pending(t->ssl) > 0;
}

const char *chan_tls_conn_version(const struct chan_tls_conn *t)
{
	return SSL_get_version(t->ssl);
}

void chan_tls_end(struct chan_tls_conn *t, struct chan *c, bool notify)
{
	if (!t)
		return;
	if (t->ssl && t->up && notify) {
		ERR_clear_error();
		if (SSL_shutdown(t->ssl) >= 0)
			flush(t, c, chan_deadline(CLOSE_WAIT_MS), NULL);
	}
	SSL_free(t->ssl);
	ERR_clear_error();
	free(t->net);
	free(t);
}
