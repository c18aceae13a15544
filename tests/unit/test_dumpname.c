/* test_dumpname.c - the dump-name rules of include/stalltrace/dumpname.h, as
 * the recorder expands them and as `run` and `top` glob for what it wrote. */
#include <criterion/criterion.h>
#include <fnmatch.h>

#include "stalltrace/dumpname.h"

static const struct st_dumpname_values values = {"4242", "node", "1700000000"};
static const struct st_dumpname_values any = {"*", "*", "*"};

Test(dumpname, the_recorder_expands_each_conversion)
{
    char out[128];
    st_dumpname_expand("/tmp/%e.%p.%t.100%%.dump", &values, 0, out, sizeof out);
    cr_assert_str_eq(out, "/tmp/node.4242.1700000000.100%.dump");
    st_dumpname_expand("a%xb%", &values, 0, out, sizeof out);
    cr_assert_str_eq(out, "a%xb%", "an unknown conversion is kept as written");
}

Test(dumpname, a_long_name_is_cut_and_terminated)
{
    char out[8];
    cr_assert_eq(st_dumpname_expand("stalltrace.%p.dump", &values, 0, out, sizeof out), 7);
    cr_assert_str_eq(out, "stalltr");
}

/* What the recorder writes, the glob finds; a glob character of the
 * template itself matches only itself. */
Test(dumpname, the_glob_matches_what_the_recorder_writes)
{
    char name[128], g[256];
    st_dumpname_expand("/tmp/[x]*%p.dump", &values, 0, name, sizeof name);
    st_dumpname_expand("/tmp/[x]*%p.dump", &any, 1, g, sizeof g);
    cr_assert_str_eq(g, "/tmp/\\[x\\]\\**.dump");
    cr_assert_eq(fnmatch(g, name, 0), 0);
    cr_assert_neq(fnmatch(g, "/tmp/x*4242.dump", 0), 0);
}

/* The .N fallback goes before ".dump", or after a name without it. */
Test(dumpname, the_fallback_names_and_their_glob)
{
    char t[64];
    cr_assert_eq(st_dumpname_stem("a/b.dump", 8), 3);
    cr_assert_eq(st_dumpname_stem("a/b.out", 7), 7);
    st_dumpname_taken_glob("/tmp/*.dump", t, sizeof t);
    cr_assert_str_eq(t, "/tmp/*.[0-9]*.dump");
    cr_assert_eq(fnmatch(t, "/tmp/stalltrace.4242.3.dump", 0), 0);
    st_dumpname_taken_glob("/tmp/out", t, sizeof t);
    cr_assert_str_eq(t, "/tmp/out.[0-9]*");
}
