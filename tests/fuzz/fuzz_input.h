/*
 * fuzz_input.h — what the libFuzzer targets share: an input read as a
 * sequence of fields, and failing a checked property (abort, which
 * libFuzzer reports as a crash with the input saved). Header-only: each
 * target is one program built from its own sources.
 */
#ifndef CAIRN_FUZZ_INPUT_H
#define CAIRN_FUZZ_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The unread rest of an input (borrowed from libFuzzer). */
struct fuzz_in {
	const uint8_t *p;
	size_t n;
};

/* Copies the next n bytes to out; false (nothing consumed) past the end. */
static inline bool fuzz_get(struct fuzz_in *in, void *out, size_t n)
{
	if (in->n < n)
		return false;
	memcpy(out, in->p, n);
	in->p += n;
	in->n -= n;
	return true;
}

/* FUZZ_FAIL("target", "format", ...): the line on stderr, then abort. */
#define FUZZ_FAIL(who, ...)                                                                        \
	do {                                                                                       \
		fprintf(stderr, who ": " __VA_ARGS__);                                             \
		fputc('\n', stderr);                                                               \
		abort();                                                                           \
	} while (0)

#endif
