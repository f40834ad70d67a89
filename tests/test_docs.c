/* docs/components.md is generated from the registry (`runexp list --markdown`); this test
 * fails when it is stale. Reference: the registry itself, through the CLI. Regenerate with
 * `make docs`. */
#include "testutil.h"

Test(docs, components_reference_is_current) {
    FILE *p = popen("./build/runexp list --markdown", "r");
    cr_assert(p, "cannot run build/runexp");
    size_t cap = 1 << 20, n = 0;
    char *gen = malloc(cap);
    size_t got;
    while ((got = fread(gen + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 >= cap) gen = realloc(gen, cap *= 2);
    }
    gen[n] = 0;
    cr_assert_eq(pclose(p), 0);
    long len;
    char *doc = rx_test_read_file("docs/components.md", &len);
    cr_assert(doc, "docs/components.md missing: run `make docs`");
    cr_expect(strcmp(doc, gen) == 0, "docs/components.md is stale: run `make docs` and commit it");
    free(doc);
    free(gen);
}
