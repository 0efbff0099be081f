/*
 * progress.c - a one-line progress bar on a terminal, and waiting for an hvd reply while
 * drawing one from the domain's progress events.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "toolstack/progress.h"

void progress_init(struct progress *p, FILE *out)
{
	p->out = out;
	p->best = 0;
	p->shown = 0;
}

void progress_draw(struct progress *p, double frac, const char *fmt, ...)
{
	char bar[PROGRESS_BAR_WIDTH + 1], text[256];
	struct winsize ws;
	va_list ap;
	int n, len;

	if (!p->out)
		return;
	if (!(frac >= 0)) /* NaN too */
		frac = 0;
	if (frac > 1)
		frac = 1;
	if (frac < p->best)
		frac = p->best;
	p->best = frac;
	n = (int)(frac * PROGRESS_BAR_WIDTH);
	memset(bar, '=', (size_t)n);
	memset(bar + n, ' ', (size_t)(PROGRESS_BAR_WIDTH - n));
	bar[PROGRESS_BAR_WIDTH] = '\0';
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	/* A line that wraps could not be redrawn in place: cut it to the terminal's width. */
	if (ioctl(fileno(p->out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > PROGRESS_BAR_WIDTH + 4 &&
	    strlen(text) > (size_t)ws.ws_col - PROGRESS_BAR_WIDTH - 4)
		text[ws.ws_col - PROGRESS_BAR_WIDTH - 4] = '\0';
	len = fprintf(p->out, "\r[%s] %s", bar, text) - 1;
	/* A shorter line than the last must not leave the old one's tail behind. */
	if (len < p->shown)
		fprintf(p->out, "%*s", p->shown - len, "");
	if (len > p->shown)
		p->shown = len;
	fflush(p->out);
}

void progress_clear(struct progress *p)
{
	if (!p->out || !p->shown)
		return;
	fprintf(p->out, "\r%*s\r", p->shown, "");
	fflush(p->out);
	p->shown = 0;
}

/* A progress event of @cmd ("checkpoint": CHECKPOINT, "save": SAVE) of domain @name. */
static void op_event(struct progress *p, json_t *msg, const char *cmd, const char *name)
{
	json_t *d = json_object_get(msg, "data");
	double done, total;

	if (strcmp(json_string_value(json_object_get(msg, "event")) ?: "",
	           strcmp(cmd, "save") ? "CHECKPOINT" : "SAVE") ||
	    strcmp(json_string_value(json_object_get(d, "name")) ?: "", name) ||
	    strcmp(json_string_value(json_object_get(d, "phase")) ?: "", "progress"))
		return;
	done = (double)json_integer_value(json_object_get(d, "pages_done"));
	total = (double)json_integer_value(json_object_get(d, "pages_total"));
	progress_draw(p, total > 0 ? done / total : 1, "%s: %s %.1f of %.1f MiB ", name, cmd,
	              done / 256, total / 256);
}

json_t *progress_call(struct ctlconn *c, int id, const char *cmd, json_t *args, const char *name,
                      struct progress *p, struct hv_error *err)
{
	json_t *req, *sub;
	int rc;

	/* A refused subscribe only costs the bar; a dead connection fails the call. */
	sub = ctlconn_call(c, -id, "subscribe", NULL, err);
	if (!sub)
		return NULL;
	json_decref(sub);
	req = json_pack("{s:i, s:s}", "id", id, "execute", cmd);
	if (req && args)
		json_object_set(req, "arguments", args);
	rc = req ? ctlconn_send(c, req, err) : hv_fail(err, ENOMEM, "out of memory");
	json_decref(req);
	if (rc < 0)
		return NULL;
	for (;;) {
		char *line = ctlconn_line(c, -1);
		json_t *msg;

		if (!line) {
			int e = errno;

			progress_clear(p);
			hv_fail(err, e ? e : EPIPE, "%s: %s: %s", c->path, cmd,
			        e ? strerror(e) : "hvd closed the connection without a reply");
			return NULL;
		}
		msg = json_loads(line, 0, NULL);
		free(line);
		if (json_is_object(msg) && json_integer_value(json_object_get(msg, "id")) == id &&
		    (json_object_get(msg, "return") || json_object_get(msg, "error"))) {
			progress_clear(p);
			return msg;
		}
		if (json_is_object(msg) && json_object_get(msg, "error") &&
		    !json_object_get(msg, "id")) {
			progress_clear(p);
			hv_fail(err, EPROTO, "%s: %s", c->path,
			        json_string_value(
			            json_object_get(json_object_get(msg, "error"), "desc"))
			            ?: "error");
			json_decref(msg);
			return NULL;
		}
		op_event(p, msg, cmd, name);
		json_decref(msg);
	}
}
