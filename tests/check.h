/* check.h - the few check macros the C tests share. Each failed check prints file:line and the
   values; a test's main ends with `return check_summary();`, whose line "N passed, M failed" is
   the last the test prints. Include after <math.h> and <stdio.h>. */
#ifndef MOE_TEST_CHECK_H
#define MOE_TEST_CHECK_H

static int n_pass, n_fail;

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (cond) n_pass++;                                                                      \
        else {                                                                                   \
            n_fail++;                                                                            \
            printf("%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                      \
        }                                                                                        \
    } while (0)

#define CHECK_INT(a, b)                                                                          \
    do {                                                                                         \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                    \
        if (va_ == vb_) n_pass++;                                                                \
        else {                                                                                   \
            n_fail++;                                                                            \
            printf("%s:%d: CHECK failed: %s == %s (%lld vs %lld)\n", __FILE__, __LINE__, #a, #b, \
                   va_, vb_);                                                                    \
        }                                                                                        \
    } while (0)

/* CHECK with a printf-style explanation printed on failure */
#define CHECK_MSG(cond, ...)                                                                     \
    do {                                                                                         \
        if (cond) n_pass++;                                                                      \
        else {                                                                                   \
            n_fail++;                                                                            \
            printf("%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);                      \
            printf(__VA_ARGS__);                                                                 \
            printf("\n");                                                                        \
        }                                                                                        \
    } while (0)

/* |a - b| <= tol * max(1, |b|) */
#define CHECK_NEAR(a, b, tol)                                                                    \
    do {                                                                                         \
        double va_ = (double)(a), vb_ = (double)(b), sc_ = fabs(vb_) > 1.0 ? fabs(vb_) : 1.0;    \
        if (fabs(va_ - vb_) <= (tol) * sc_) n_pass++;                                            \
        else {                                                                                   \
            n_fail++;                                                                            \
            printf("%s:%d: CHECK failed: %s ~ %s (%.10g vs %.10g, tol %g)\n", __FILE__,          \
                   __LINE__, #a, #b, va_, vb_, (double)(tol));                                   \
        }                                                                                        \
    } while (0)

static int check_summary(void) {
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}

#endif
