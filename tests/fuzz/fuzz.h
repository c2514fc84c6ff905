/* fuzz.h - what the libFuzzer targets of tests/fuzz/ share: each is one reader (or the layer
   entry points) on an exactly sized heap copy of the input, so AddressSanitizer sees any read
   past its end; on success everything handed out is walked, and every failure must come with a
   message. Built and run by tests/run_tests.sh (variant "fuzz") with clang
   -fsanitize=fuzzer,address,undefined; see README, "Reliability". */
#ifndef MOE_FUZZ_H
#define MOE_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned fuzz_sink;

/* a violated invariant: libFuzzer saves the input and stops */
#define FUZZ_ASSERT(c)                                                                           \
    do {                                                                                         \
        if (!(c)) {                                                                              \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c);            \
            abort();                                                                             \
        }                                                                                        \
    } while (0)

/* an exactly sized copy (1 byte for an empty input, never read) */
static __attribute__((unused)) unsigned char *fuzz_copy(const uint8_t *data, size_t size) {
    unsigned char *p = (unsigned char *)malloc(size ? size : 1);
    if (p && size) memcpy(p, data, size);
    return p;
}

#endif
