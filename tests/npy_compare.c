/* npy_compare - compare a .npy result with a reference .npy, for tests/test_cli.sh (so the test
   needs no Python at run time).

      npy_compare OUT.npy REF.npy TOL     pass if max|out - ref| <= TOL * max(1, max|ref|)
      npy_compare OUT.npy REF.npy exact   pass if every element is equal (as doubles)

   Reads little-endian '<f4', '<f8' and '<i4' arrays, C order, any rank; shapes must match.
   Prints one line (the worst error, or what differs) and exits 0 on pass, 1 on fail, 2 on a
   usage or file error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct arr {
    double *v;
    size_t n;
    int rank;
    long shape[8];
} arr;

static int load(const char *path, arr *a) {
    FILE *f = fopen(path, "rb");
    unsigned char pre[10];
    char hdr[4096], descr[8] = "";
    if (!f) { fprintf(stderr, "%s: cannot open\n", path); return 0; }
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) || pre[6] != 1) {
        fprintf(stderr, "%s: not a version 1 .npy file\n", path);
        fclose(f);
        return 0;
    }
    size_t hl = (size_t)pre[8] | (size_t)pre[9] << 8;
    if (hl >= sizeof hdr || fread(hdr, 1, hl, f) != hl) {
        fprintf(stderr, "%s: bad header\n", path);
        fclose(f);
        return 0;
    }
    hdr[hl] = 0;
    const char *p = strstr(hdr, "'descr': '"), *s = strstr(hdr, "'shape': (");
    if (!p || !s || strstr(hdr, "'fortran_order': True")) {
        fprintf(stderr, "%s: unsupported header %s\n", path, hdr);
        fclose(f);
        return 0;
    }
    memcpy(descr, p + 10, 3);
    a->rank = 0;
    a->n = 1;
    for (s += 10; *s && *s != ')';) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s) { s++; continue; }
        if (a->rank < 8) a->shape[a->rank++] = v;
        a->n *= (size_t)v;
        s = end;
    }
    int size = !strcmp(descr, "<f8") ? 8 : (!strcmp(descr, "<f4") || !strcmp(descr, "<i4")) ? 4 : 0;
    if (!size) {
        fprintf(stderr, "%s: dtype %s not handled\n", path, descr);
        fclose(f);
        return 0;
    }
    unsigned char *raw = malloc(a->n * (size_t)size + 1);
    a->v = malloc((a->n + 1) * sizeof(double));
    if (!raw || !a->v || fread(raw, (size_t)size, a->n, f) != a->n) {
        fprintf(stderr, "%s: short data\n", path);
        free(raw);
        fclose(f);
        return 0;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (size == 8) { double d; memcpy(&d, raw + 8 * i, 8); a->v[i] = d; }
        else if (descr[1] == 'f') { float x; memcpy(&x, raw + 4 * i, 4); a->v[i] = x; }
        else { int x; memcpy(&x, raw + 4 * i, 4); a->v[i] = x; }
    }
    free(raw);
    fclose(f);
    return 1;
}

int main(int argc, char **argv) {
    arr o, r;
    if (argc != 4) {
        fprintf(stderr, "usage: npy_compare OUT.npy REF.npy TOL|exact\n");
        return 2;
    }
    if (!load(argv[1], &o) || !load(argv[2], &r)) return 2;
    if (o.rank != r.rank || memcmp(o.shape, r.shape, (size_t)o.rank * sizeof(long))) {
        printf("shape differs: rank %d vs %d, %ld x %ld vs %ld x %ld\n", o.rank, r.rank,
               o.rank ? o.shape[0] : 0, o.rank > 1 ? o.shape[1] : 0, r.rank ? r.shape[0] : 0,
               r.rank > 1 ? r.shape[1] : 0);
        return 1;
    }
    int exact = !strcmp(argv[3], "exact");
    double tol = exact ? 0.0 : atof(argv[3]), worst = 0.0, ref_max = 0.0;
    size_t at = 0, bad = 0;
    for (size_t i = 0; i < r.n; i++) {
        double e = fabs(o.v[i] - r.v[i]);
        if (!(e <= worst)) { worst = e; at = i; }
        if (fabs(r.v[i]) > ref_max) ref_max = fabs(r.v[i]);
        if (exact && o.v[i] != r.v[i]) bad++;
    }
    double lim = tol * (ref_max > 1.0 ? ref_max : 1.0);
    int ok = exact ? bad == 0 : worst <= lim;
    if (exact)
        printf("%s: %zu of %zu differ%s", ok ? "equal" : "DIFFER", bad, r.n, ok ? "\n" : "");
    else
        printf("max err %.3g (limit %.3g, max|ref| %.3g)%s", worst, lim, ref_max, ok ? "\n" : "");
    if (!ok) printf(" first worst at flat index %zu: %.9g vs ref %.9g\n", at, o.v[at], r.v[at]);
    free(o.v);
    free(r.v);
    return ok ? 0 : 1;
}
