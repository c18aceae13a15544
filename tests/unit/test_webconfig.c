/* test_webconfig.c - `metrics --web.config.file`: the exporter-toolkit YAML
 * read or refused with one line, and basic auth checked against bcrypt. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics_webconfig.h"

/* bcrypt of "s3cret", cost 10, as htpasswd -B writes it ($2y$). */
#define HASH "$2y$10$N3xf6C2ixCAu4HLExHTsXe5r5MSbm4uHHrDP1rIr03w5Px8mc75H."

static struct web_config *load(const char *yaml, char **err)
{
    char path[] = "/tmp/st_web_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    struct web_config *c = web_config_load(path, err);
    unlink(path);
    return c;
}

Test(webconfig, basic_auth_users_with_bcrypt)
{
    char *err = NULL;
    struct web_config *c = load("basic_auth_users:\n  prom: " HASH "\n", &err);

    cr_assert_not_null(c, "%s", err);
    cr_assert_eq(c->nusers, 1);
    cr_assert_null(c->cert_pem);
    cr_assert(web_config_allows(c, "prom", "s3cret"));
    cr_assert(web_config_allows(c, "prom", "s3cret"), "the remembered credentials");
    cr_assert_not(web_config_allows(c, "prom", "s3cret!"));
    cr_assert_not(web_config_allows(c, "other", "s3cret"));
    cr_assert_not(web_config_allows(c, "prom", NULL));
    web_config_free(c);
}

Test(webconfig, empty_file_is_plain_http_without_auth)
{
    char *err = NULL;
    struct web_config *c = load("", &err);

    cr_assert_not_null(c, "%s", err);
    cr_assert(web_config_allows(c, NULL, NULL));
    web_config_free(c);
}

Test(webconfig, refuses_what_it_cannot_honour)
{
    static const struct {
        const char *yaml, *says;
    } cases[] = {
        {"basic_auth_users:\n  prom: plaintext\n", "not a bcrypt hash"},
        {"tls_server_config:\n  cert_file: c.pem\n", "needs cert_file and key_file"},
        {"tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  client_ca_file: ca.pem\n",
         "client_ca_file"},
        {"tls_server_config:\n  cert_file: /nonexistent/c.pem\n  key_file: k.pem\n", "No such file"},
        {"basic_auth_user:\n  prom: " HASH "\n", "not a web config key"},
        {"- a\n- b\n", "not a mapping"},
        {"basic_auth_users: [\n", "line"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *err = NULL;
        cr_assert_null(load(cases[i].yaml, &err), "accepted %s", cases[i].yaml);
        cr_assert(err && strstr(err, cases[i].says), "%s: %s", cases[i].yaml, err ? err : "(no message)");
        cr_assert_null(strchr(err, '\n'), "one line: %s", err);
        free(err);
    }
}
