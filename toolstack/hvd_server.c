/*
 * hvd_server.c - hvd's API socket: clients, request lines, replies, events.
 *
 * The framing is the VM control socket's, served by the same code (jsonl_server.c):
 * newline-delimited JSON, a greeting on connect, bounded input and output per client.
 * What differs is that a reply may come long after its request (a save, a VM start), so
 * a request becomes a struct hvd_op that holds a reference to its client; a client that
 * hangs up before its reply is closed at once but freed only when its last operation has
 * completed, and the reply is dropped.
 */
#include <stdlib.h>

#include "toolstack/hvd.h"
#include "toolstack/jsonl_server.h"

#define HVD_MAX_CLIENTS 64
#define HVD_MAX_OUT     (4u << 20) /* queued output per client before it is dropped */

/* What hvd keeps per client: jsonl_data, freed when the client closes. */
struct hvd_client {
	bool subscribed; /* gets the events (subscribe) */
};

void hvd_op_done(struct hvd_op *op, enum control_class cls, json_t *ret, const char *desc)
{
	if (op->c) {
		char *line = hvd_reply(op->id, cls, ret, desc);
		struct hvd_client *hc = jsonl_data(op->c);

		jsonl_send(op->c,
		           line ? line
		                : "{\"error\":{\"class\":\"Failed\",\"desc\":\"out of memory\"}}");
		free(line);
		if (op->cmd == HVD_SUBSCRIBE && cls == CONTROL_OK && hc)
			hc->subscribed = true;
		jsonl_unref(op->c);
	}
	if (op->d && op->d->op == op)
		op->d->op = NULL;
	json_decref(op->id);
	json_decref(op->ret);
	free(op);
}

pid_t hvd_op_peer_pid(const struct hvd_op *op)
{
	return op->c ? jsonl_peer_pid(op->c) : 0;
}

void hvd_event(struct hvd *h, const char *name, json_t *data)
{
	char *line = control_event(name, data);

	for (struct jsonl_client *c = jsonl_first(h->api); line && c; c = jsonl_next(c)) {
		struct hvd_client *hc = jsonl_data(c);
		if (hc && hc->subscribed)
			jsonl_send(c, line);
	}
	free(line);
}

static void client_accept(void *arg, struct jsonl_client *c)
{
	char *hello;

	/* Without its state a client cannot subscribe; it still gets its replies. */
	jsonl_set_data(c, calloc(1, sizeof(struct hvd_client)));
	hello = hvd_greeting(HV_VERSION);
	jsonl_send(c, hello);
	free(hello);
}

static void client_closed(void *arg, struct jsonl_client *c)
{
	free(jsonl_data(c));
	jsonl_set_data(c, NULL);
}

static void client_line(void *arg, struct jsonl_client *c, char *line, size_t len)
{
	struct hvd *h = arg;
	struct hv_error err = {0};
	struct hvd_request r;
	enum control_class cls;
	struct hvd_op *op;
	json_t *id;

	cls = hvd_request_parse(line, len, &r, &id, &err);
	if (cls != CONTROL_OK) {
		char *reply = hvd_reply(id, cls, NULL, err.msg);
		jsonl_send(c, reply);
		free(reply);
		json_decref(id);
		return;
	}
	op = calloc(1, sizeof(*op));
	if (!op) {
		char *reply = hvd_reply(r.id, CONTROL_FAILED, NULL, "out of memory");
		jsonl_send(c, reply);
		free(reply);
		hvd_request_free(&r);
		return;
	}
	op->hvd = h;
	op->c = c;
	jsonl_ref(c);
	op->id = json_incref(r.id);
	op->cmd = r.cmd;
	hvd_dispatch(h, op, &r);
	hvd_request_free(&r);
}

static void client_overlong(void *arg, struct jsonl_client *c, const char *desc)
{
	char *reply = control_error_line(CONTROL_PARSE_ERROR, desc);

	jsonl_send(c, reply);
	free(reply);
}

int hvd_listen(struct hvd *h, struct hv_error *err)
{
	struct jsonl_config cfg = {
	    .max_line = HVD_MAX_LINE,
	    .max_out = HVD_MAX_OUT,
	    .max_clients = HVD_MAX_CLIENTS,
	    .backlog = 64,
	    .busy_line = "{\"error\":{\"class\":\"Failed\",\"desc\":\"too many hvd "
	                 "clients\"}}\n",
	    .option = "--socket",
	    .in_use = "another hvd is listening there",
	    .arg = h,
	    .on_accept = client_accept,
	    .on_line = client_line,
	    .on_overlong = client_overlong,
	    .on_close = client_closed,
	};

	/* Mode 0600 from birth: whoever connects can destroy every VM. */
	h->api = jsonl_listen(h->loop, h->sock_path, &cfg, err);
	return h->api ? 0 : -1;
}

void hvd_server_close(struct hvd *h)
{
	/* Whatever the socket takes at once; hvd is on its way out. */
	jsonl_close(h->api, 0);
	h->api = NULL;
}
