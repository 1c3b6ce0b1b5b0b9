/*
 * Allocation helpers that abort on OOM. Safe because sizes chosen by a peer always go
 * through capped buffers (common/limits.h).
 */
#pragma once

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
