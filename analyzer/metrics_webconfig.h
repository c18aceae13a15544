/* metrics_webconfig.h - `metrics --web.config.file`: TLS and basic auth in
 * the Prometheus exporter-toolkit format node_exporter users already write. */
#ifndef STALLTRACE_METRICS_WEBCONFIG_H
#define STALLTRACE_METRICS_WEBCONFIG_H

#include <stdbool.h>
#include <stddef.h>

struct web_config {
    char *cert_pem, *key_pem;      /* tls_server_config; NULL: plain HTTP */
    char **users, **hashes;        /* basic_auth_users: name -> bcrypt hash */
    size_t nusers;
    void *cache;                   /* credentials already checked (digests) */
};

/* Read PATH (YAML; cert_file and key_file relative to its directory). NULL
 * with a malloc'd one-line *err on a file that cannot be read, is not that
 * format, or asks for something this server does not do. */
struct web_config *web_config_load(const char *path, char **err);
void web_config_free(struct web_config *c);

/* Are these credentials one of basic_auth_users (bcrypt, "$2y$" and kin)?
 * true when the file has no users. Thread-safe. */
bool web_config_allows(struct web_config *c, const char *user, const char *password);

#endif /* STALLTRACE_METRICS_WEBCONFIG_H */
