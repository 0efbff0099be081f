/*
 * progress.h - a one-line progress bar on a terminal, for the long operations that hvctl
 * and hvmigrate wait for (a migration, a checkpoint through hvd).
 *
 * The line is redrawn in place with '\r' and the bar never goes backwards (a migration's
 * remaining bytes can grow again between rounds). A bar is only for a person watching:
 * callers draw it only when stderr is a tty and --json was not given, so scripts and
 * tests see the same output as before.
 */
#ifndef HV_TOOLSTACK_PROGRESS_H
#define HV_TOOLSTACK_PROGRESS_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "hv/error.h"
#include "toolstack/ctlconn.h"

#define PROGRESS_BAR_WIDTH 30

struct progress {
	FILE *out;   /* where the line goes (stderr); NULL: nothing is drawn */
	double best; /* the largest fraction shown so far */
	int shown;   /* columns of the line on screen, 0 when none is */
};

/* progress_init - a bar on @out (NULL for none), nothing drawn yet. */
void progress_init(struct progress *p, FILE *out);

/*
 * progress_draw - redraw the line: "[====      ] " and the text of @fmt. @frac is clamped
 * to [0, 1] and to at least what was shown before.
 */
void progress_draw(struct progress *p, double frac, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* progress_clear - erase the line (if one is shown), leaving the cursor at column 0. */
void progress_clear(struct progress *p);

/*
 * progress_call - ctlconn_call() of @cmd ("checkpoint" or "save") on hvd's socket, drawing
 * @p from the CHECKPOINT (or SAVE) events with phase "progress" of domain @name until the
 * reply comes, and erasing the
 * line before returning, so that the caller prints its result on a clean line. Asks hvd
 * to `subscribe` first (id -@id). Returns the reply (the caller decrefs), or NULL with @err.
 */
json_t *progress_call(struct ctlconn *c, int id, const char *cmd, json_t *args, const char *name,
                      struct progress *p, struct hv_error *err);

#endif
