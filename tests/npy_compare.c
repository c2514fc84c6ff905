/* npy_compare - compare a .npy result with a reference .npy, for tests/test_cli.sh (so the test
   needs no Python at run time).

      npy_compare OUT.npy REF.npy TOL     pass if max|out - ref| <= TOL * max(1, max|ref|)
      npy_compare OUT.npy REF.npy exact   pass if every element is equal (as doubles)
      npy_compare OUT.npy REF.npy nmse TOL  pass if sum (out - ref)^2 / sum ref^2 <= TOL (the
                                          normalized mean squared error; the max error is
                                          printed too)

   Reads what mio_npy_read_f64 (moe_io.h) reads: '<f4', '<f8' or '<i4', C order, rank 2; the
   shapes must match. Prints one line (the worst error, or what differs) and exits 0 on pass,
   1 on fail, 2 on a usage or file error. */
#define MOE_IO_IMPLEMENTATION
#include "moe_io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    double *o = NULL, *r = NULL;
    size_t orows, ocols, rrows, rcols;
    char err[MIO_ERR_SIZE];
    char *end;
    int exact = argc == 4 && !strcmp(argv[3], "exact");
    int nmse = argc == 5 && !strcmp(argv[3], "nmse");
    const char *targ = nmse ? argv[4] : argv[3];
    double tol = (argc == 4 && !exact) || nmse ? strtod(targ, &end) : 0.0;
    if ((argc != 4 && !nmse) || (!exact && (end == targ || *end || !(tol >= 0.0)))) {
        fprintf(stderr, "usage: npy_compare OUT.npy REF.npy TOL|exact|nmse TOL\n");
        return 2;
    }
    if (mio_npy_read_f64(argv[1], &o, &orows, &ocols, err, sizeof err) ||
        mio_npy_read_f64(argv[2], &r, &rrows, &rcols, err, sizeof err)) {
        fprintf(stderr, "npy_compare: %s\n", err);
        free(o);
        return 2;
    }
    if (orows != rrows || ocols != rcols) {
        printf("shape differs: (%zu, %zu) vs ref (%zu, %zu)\n", orows, ocols, rrows, rcols);
        free(o);
        free(r);
        return 1;
    }
    size_t n = rrows * rcols, at = 0, bad = 0;
    double worst = 0.0, ref_max = 0.0, se = 0.0, sr = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(o[i] - r[i]);
        se += e * e, sr += r[i] * r[i];
        if (!(e <= worst) && worst == worst) { worst = e; at = i; } /* the first NaN stays worst */
        if (fabs(r[i]) > ref_max) ref_max = fabs(r[i]);
        if (o[i] != r[i]) bad++;
    }
    double lim = tol * (ref_max > 1.0 ? ref_max : 1.0);
    double q = sr > 0.0 ? se / sr : se;
    int ok = exact ? bad == 0 : nmse ? q <= tol : worst <= lim;
    if (nmse)
        printf("nmse %.3g (limit %.3g), max err %.3g of max|ref| %.3g", q, tol, worst, ref_max);
    else if (exact)
        printf("%s: %zu of %zu differ", ok ? "equal" : "DIFFER", bad, n);
    else
        printf("max err %.3g (limit %.3g, max|ref| %.3g)", worst, lim, ref_max);
    if (!ok) printf("; worst at flat index %zu: %.9g vs ref %.9g", at, o[at], r[at]);
    printf("\n");
    free(o);
    free(r);
    return ok ? 0 : 1;
}
