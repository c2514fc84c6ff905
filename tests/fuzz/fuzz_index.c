/* fuzz_index.c - libFuzzer target: model.safetensors.index.json (streamed weight_map, shard
   table). */
#define _DEFAULT_SOURCE
#define MOE_IO_IMPLEMENTATION
#include "../../examples/moe_io.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[MIO_ERR_SIZE], path[] = "fuzz/model.safetensors.index.json";
    mio_model m;
    unsigned char *p = fuzz_copy(data, size);
    size_t i;
    if (!p) return 0;
    memset(&m, 0, sizeof m);
    m.index_path = path;
    m.sharded = 1;
    if (mio__model_index_text(&m, p, size, err, sizeof err) == MIO_OK) {
        FUZZ_ASSERT(m.n_entries > 0 && m.n_shards > 0 && m.n_shards <= m.n_entries);
        for (i = 0; i < m.n_entries; i++) {
            FUZZ_ASSERT(m.entries[i].shard < m.n_shards);
            FUZZ_ASSERT(i == 0 || strcmp(m.entries[i - 1].name, m.entries[i].name) < 0);
            FUZZ_ASSERT(mio_model_has(&m, m.entries[i].name));
        }
        for (i = 1; i < m.n_shards; i++) FUZZ_ASSERT(strcmp(m.shards[i - 1].file, m.shards[i].file) < 0);
    } else {
        FUZZ_ASSERT(err[0] != '\0');
    }
    m.index_path = NULL; /* not ours to free */
    mio_model_close(&m);
    free(p);
    return 0;
}
