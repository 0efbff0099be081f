/*
 * chan.h - one migration connection: a TCP (IPv4/IPv6) or Unix stream socket, optionally
 * TLS 1.3 with mutual certificate authentication, its I/O done through io_uring.
 *
 * Addresses are text: "tcp:HOST:PORT" (HOST a name, an IPv4 address or a bracketed IPv6
 * address, "tcp:[::1]:4444") or "unix:PATH".
 *
 * TLS (OpenSSL): both sides present a certificate signed by the CA they share; the server
 * requires the client's, the client checks the server's against its expected host name
 * (--tls-hostname, by default the HOST of the address). TLS 1.3 only. Once a side has TLS
 * configured there is no plaintext fallback: a plaintext peer fails the handshake. The
 * TLS engine runs on memory BIOs: records are encrypted into a buffer that io_uring
 * sends, and received bytes go from io_uring into the read BIO.
 *
 * Threads: a chan is used by one thread at a time, except chan_abort(), which any thread
 * may call at any time to make every pending and later operation fail promptly.
 * Errors: functions return -1 (or NULL) with a one-line message in @err naming the peer
 * (or the address) and the cause, e.g. "tcp:10.0.0.2:4444: TLS handshake: certificate
 * verify failed (unable to get local issuer certificate)".
 */
#ifndef HV_MIGRATE_CHAN_H
#define HV_MIGRATE_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "hv/error.h"
#include "migrate/stream.h"

#define CHAN_ADDR_MAX     300
#define CHAN_HANDSHAKE_MS 10000 /* an unbounded chan_accept's bound on the TLS handshake */

struct chan_addr {
	int family;               /* AF_INET or AF_INET6 for tcp: (after resolution), AF_UNIX */
	bool tcp;                 /* tcp:HOST:PORT (family resolved at connect/listen) */
	char host[256];           /* tcp: without brackets */
	uint16_t port;            /* tcp: 0 lets the kernel pick when listening */
	char path[108];           /* unix: */
	char text[CHAN_ADDR_MAX]; /* as given, for messages */
};

/* chan_addr_parse - parse @s; -1 with @err ("'tcp:x': expected tcp:HOST:PORT or unix:PATH"). */
int chan_addr_parse(const char *s, struct chan_addr *a, struct hv_error *err);

/* TLS settings; all NULL means plaintext. cert, key and ca are required together. */
struct chan_tls_config {
	const char *cert;      /* PEM certificate chain of this side */
	const char *key;       /* PEM private key */
	const char *ca;        /* PEM CA certificate(s) that sign the peer's certificate */
	const char *hostname;  /* client: expected name in the server's certificate; NULL:
	                        * the address's host */
	const char *peer_name; /* server: a DNS name the client's certificate must carry (in
	                        * its subjectAltName, or its CN when it has none); NULL: any
	                        * certificate signed by @ca is let in */
};

/* A TLS context (an SSL_CTX) shared by every channel of one side. */
struct chan_tls;

/*
 * chan_tls_new - load and check the files (readable, key matches certificate) and build a
 * context for the @server or client side. NULL with @err naming the file at fault.
 */
struct chan_tls *chan_tls_new(const struct chan_tls_config *cfg, bool server, struct hv_error *err);
void chan_tls_free(struct chan_tls *tls);

struct chan;
struct chan_listener;

/*
 * chan_listen - listen on @a (TCP with SO_REUSEADDR; a Unix path must not exist or be a
 * stale socket nobody listens on, which is replaced). The socket is CLOEXEC.
 */
struct chan_listener *chan_listen(const struct chan_addr *a, struct hv_error *err);

/* chan_listener_port - the TCP port actually bound (useful with port 0), else 0. */
uint16_t chan_listener_port(const struct chan_listener *l);
int chan_listener_fd(const struct chan_listener *l);

/*
 * chan_listener_after_fork - in a child process that will accept on @l: give it an
 * io_uring of its own (a ring is shared memory: parent and child must never both use
 * one). The parent must not accept on @l while the child does.
 */
int chan_listener_after_fork(struct chan_listener *l, struct hv_error *err);

/* chan_listener_close - close, and remove the Unix socket file if it is still ours. */
void chan_listener_close(struct chan_listener *l);

/*
 * chan_accept - wait up to @timeout_ms (-1: forever) for a connection and, with @tls
 * non-NULL, complete the server side of the TLS handshake (also bounded by @timeout_ms,
 * or by CHAN_HANDSHAKE_MS when that is -1: a stalled client never holds the listener).
 * NULL with @err on timeout, a failed handshake (the client is dropped) or an error.
 * chan_listener_abort() from another thread makes a waiting chan_accept fail at once.
 */
struct chan *chan_accept(struct chan_listener *l, struct chan_tls *tls, int timeout_ms,
                         struct hv_error *err);
void chan_listener_abort(struct chan_listener *l);

/*
 * chan_connect - connect to @a (every resolved address in turn) and, with @tls, complete
 * the client handshake, checking the server's certificate and host name. Bounded by
 * @timeout_ms (-1: no bound). NULL with @err on failure.
 */
struct chan *chan_connect(const struct chan_addr *a, struct chan_tls *tls, int timeout_ms,
                          const char *tls_hostname, struct hv_error *err);

/* chan_write - send all @n bytes; -1 with @err (peer gone, aborted, timed out). */
int chan_write(struct chan *c, const void *p, size_t n, struct hv_error *err);

/*
 * chan_read - receive exactly @n bytes (buffered: small reads cost no system call).
 * -1 with *@eof true when the peer closed the connection cleanly before @n bytes came,
 * else -1 with @err. @eof may be NULL.
 */
int chan_read(struct chan *c, void *p, size_t n, bool *eof, struct hv_error *err);

/* chan_readable - bytes already buffered (read without waiting) > 0. */
bool chan_readable(const struct chan *c);

/*
 * chan_set_timeout - bound every later read and write to @ms milliseconds (-1: none, the
 * default); a timed-out operation fails with ETIMEDOUT.
 */
void chan_set_timeout(struct chan *c, int ms);

/* chan_abort - from any thread: make pending and later operations fail (ECANCELED). */
void chan_abort(struct chan *c);

/* chan_close - close the connection (a TLS close_notify is sent when possible) and free. */
void chan_close(struct chan *c);

/* chan_rtt_us - the connection's round trip as TCP measures it (0 for Unix sockets). */
uint64_t chan_rtt_us(const struct chan *c);

/*
 * chan_peer_gone - the peer has closed or shut down its end (a FIN or a reset is
 * pending), without reading anything. For a last check before a point of no return.
 */
bool chan_peer_gone(const struct chan *c);

/*
 * chan_reset_by_peer - after the peer hung up: whether the connection was reset within
 * @wait_ms, which a peer's kernel does when it closes a socket with data it never read
 * (or data arrives after it closed). A peer that read everything sends no reset.
 */
bool chan_reset_by_peer(const struct chan *c, int wait_ms);

/* chan_peer - "tcp:127.0.0.1:4444", "unix:/run/x" - for messages. */
const char *chan_peer(const struct chan *c);

/* chan_bytes_sent / chan_bytes_received - bytes on the wire (TLS overhead included). */
uint64_t chan_bytes_sent(const struct chan *c);
uint64_t chan_bytes_received(const struct chan *c);

/* chan_tls_version - "TLSv1.3" when TLS is on, else NULL. */
const char *chan_tls_version(const struct chan *c);

/* The stream adaptor: stream_open_write_io(s, &chan_stream_io, chan, ...). */
extern const struct stream_io chan_stream_io;

/*
 * Internal, between chan.c (sockets, io_uring, buffering) and chan_tls.c (everything that
 * touches OpenSSL); not for other callers. Deadlines are CLOCK_MONOTONIC nanoseconds, 0
 * for none (chan_deadline(-1)).
 *
 * chan_net_send, chan_net_recv - the socket, through io_uring: all @n bytes; at most @cap
 * bytes (> 0, or 0 at end of input). -1 with @err naming the peer and @what.
 * chan_tls_start - the handshake on @c's connected socket, as the side @tls is for. A
 * client checks the server against @hostname, else the configured name, else @addr_host
 * (an IP literal against the certificate's IP entries), and returns only once the server
 * has accepted the client's certificate; data the server sent meanwhile lands in @early
 * (*@early_len bytes of @cap). NULL with @err.
 * chan_tls_read - up to @cap bytes: > 0, 0 at the peer's close_notify, -1.
 * chan_tls_write - all @n bytes, or -1.
 * chan_tls_end - send close_notify if @notify and the session is sound, then free.
 */
struct chan_tls_conn;
int64_t chan_deadline(int ms);
int chan_net_send(struct chan *c, const void *p, size_t n, int64_t deadline, struct hv_error *err);
int chan_net_recv(struct chan *c, void *p, size_t cap, int64_t deadline, const char *what,
                  struct hv_error *err);
bool chan_tls_is_server(const struct chan_tls *tls);
struct chan_tls_conn *chan_tls_start(struct chan *c, struct chan_tls *tls, const char *hostname,
                                     const char *addr_host, int64_t deadline, uint8_t *early,
                                     size_t cap, size_t *early_len, struct hv_error *err);
int chan_tls_read(struct chan_tls_conn *t, struct chan *c, void *p, size_t cap, int64_t deadline,
                  struct hv_error *err);
int chan_tls_write(struct chan_tls_conn *t, struct chan *c, const void *p, size_t n,
                   int64_t deadline, struct hv_error *err);
bool chan_tls_pending(const struct chan_tls_conn *t);
const char *chan_tls_conn_version(const struct chan_tls_conn *t);
void chan_tls_end(struct chan_tls_conn *t, struct chan *c, bool notify);

#endif
