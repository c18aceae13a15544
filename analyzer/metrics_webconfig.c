/* metrics_webconfig.c - reads the exporter-toolkit web config with libyaml
 * and checks basic auth against its bcrypt hashes with libxcrypt's crypt_rn. */
#include <crypt.h>
#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <yaml.h>

#include "metrics_webconfig.h"

#define PEM_MAX (1u << 20)
#define CACHE_SLOTS 32             /* credentials remembered once bcrypt said yes */

/* bcrypt costs tens of ms by design: a scraper sending the same credentials
 * every 15 s pays it once. Only digests of what was accepted are kept. */
struct auth_cache {
    pthread_mutex_t lock;
    uint8_t digest[CACHE_SLOTS][32];
    size_t n, next;
};

/* Set *err to one line (NULL if even that failed); returns NULL. */
static char *fail(char **err, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(err, fmt, ap);
    va_end(ap);
    if (n < 0)
        *err = NULL;
    return NULL;
}

/* A file named by the config, relative to the config's directory. */
static char *read_pem(const char *config, const char *name, char **err)
{
    char *dir = strdup(config), *path = NULL, *buf = NULL;
    size_t len = 0;
    FILE *f = NULL;

    if (!dir)
        return fail(err, "out of memory");
    if (name[0] == '/' ? asprintf(&path, "%s", name) < 0 : asprintf(&path, "%s/%s", dirname(dir), name) < 0)
        path = NULL;
    free(dir);
    if (!path)
        return fail(err, "out of memory");
    if (!(f = fopen(path, "re")) || !(buf = malloc(PEM_MAX + 1)) ||
        (len = fread(buf, 1, PEM_MAX + 1, f), ferror(f)) || len > PEM_MAX) {
        fail(err, "%s: %s", path, !f ? strerror(errno) : len > PEM_MAX ? "larger than 1 MB" : "cannot read");
        free(buf);
        buf = NULL;
    } else {
        buf[len] = '\0';
    }
    if (f)
        fclose(f);
    free(path);
    return buf;
}

static const char *scalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int load_tls(struct web_config *c, yaml_document_t *doc, yaml_node_t *map, const char *path,
                    char **err)
{
    const char *cert = NULL, *key = NULL;

    if (map->type != YAML_MAPPING_NODE) {
        fail(err, "%s: tls_server_config is not a mapping", path);
        return -1;
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(doc, p->key));
        const char *v = scalar(yaml_document_get_node(doc, p->value));
        if (k && strcmp(k, "cert_file") == 0 && v)
            cert = v;
        else if (k && strcmp(k, "key_file") == 0 && v)
            key = v;
        else if (k && strcmp(k, "client_auth_type") == 0 && v && (!*v || strcmp(v, "NoClientCert") == 0))
            continue;
        else {
            fail(err, "%s: tls_server_config.%s%s%s is not supported by stalltrace metrics (cert_file and "
                 "key_file are)", path, k ? k : "?", v ? ": " : "", v ? v : "");
            return -1;
        }
    }
    if (!cert || !key || !*cert || !*key) {
        fail(err, "%s: tls_server_config needs cert_file and key_file", path);
        return -1;
    }
    if (!(c->cert_pem = read_pem(path, cert, err)) || !(c->key_pem = read_pem(path, key, err)))
        return -1;
    return 0;
}

static int load_users(struct web_config *c, yaml_document_t *doc, yaml_node_t *map, const char *path,
                      char **err)
{
    if (map->type != YAML_MAPPING_NODE) {
        fail(err, "%s: basic_auth_users is not a mapping of user: bcrypt hash", path);
        return -1;
    }
    size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    c->users = calloc(n + 1, sizeof(*c->users));
    c->hashes = calloc(n + 1, sizeof(*c->hashes));
    if (!c->users || !c->hashes) {
        fail(err, "out of memory");
        return -1;
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(doc, p->key));
        const char *v = scalar(yaml_document_get_node(doc, p->value));
        if (!k || !*k || !v || strncmp(v, "$2", 2) != 0 || strlen(v) != 60) {
            fail(err, "%s: basic_auth_users.%s is not a bcrypt hash ($2y$...)", path, k ? k : "?");
            return -1;
        }
        if (!(c->users[c->nusers] = strdup(k)) || !(c->hashes[c->nusers] = strdup(v))) {
            fail(err, "out of memory");
            return -1;
        }
        c->nusers++;
    }
    return 0;
}

static int load_http(yaml_document_t *doc, yaml_node_t *map, const char *path, char **err)
{
    if (map->type == YAML_MAPPING_NODE)
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
            const char *k = scalar(yaml_document_get_node(doc, p->key));
            if (k && strcmp(k, "http2") == 0)
                continue;          /* HTTP/1.1 is what Prometheus scrapes with */
            fail(err, "%s: http_server_config.%s is not supported by stalltrace metrics", path, k ? k : "?");
            return -1;
        }
    return 0;
}

struct web_config *web_config_load(const char *path, char **err)
{
    struct web_config *c = calloc(1, sizeof(*c));
    struct auth_cache *cache = calloc(1, sizeof(*cache));
    yaml_parser_t parser;
    yaml_document_t doc;
    FILE *f = NULL;
    int rc = -1;

    *err = NULL;
    if (!c || !cache) {
        free(c);
        free(cache);
        fail(err, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&cache->lock, NULL);
    c->cache = cache;
    if (!(f = fopen(path, "re"))) {
        fail(err, "%s: %s", path, strerror(errno));
        web_config_free(c);
        return NULL;
    }
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        fail(err, "%s: line %zu: %s", path, parser.problem_mark.line + 1,
             parser.problem ? parser.problem : "not YAML");
        yaml_parser_delete(&parser);
        fclose(f);
        web_config_free(c);
        return NULL;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || (root->type == YAML_SCALAR_NODE && !*scalar(root))) {
        rc = 0;                    /* an empty file: plain HTTP, no auth */
    } else if (root->type != YAML_MAPPING_NODE) {
        fail(err, "%s: not a mapping of tls_server_config, http_server_config, basic_auth_users", path);
    } else {
        rc = 0;
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; rc == 0 && p < root->data.mapping.pairs.top;
             p++) {
            const char *k = scalar(yaml_document_get_node(&doc, p->key));
            yaml_node_t *v = yaml_document_get_node(&doc, p->value);
            if (k && strcmp(k, "tls_server_config") == 0)
                rc = load_tls(c, &doc, v, path, err);
            else if (k && strcmp(k, "basic_auth_users") == 0)
                rc = load_users(c, &doc, v, path, err);
            else if (k && strcmp(k, "http_server_config") == 0)
                rc = load_http(&doc, v, path, err);
            else {
                fail(err, "%s: %s is not a web config key (tls_server_config, http_server_config, "
                     "basic_auth_users)", path, k ? k : "?");
                rc = -1;
            }
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    if (rc < 0) {
        if (!*err)
            fail(err, "out of memory");
        web_config_free(c);
        return NULL;
    }
    return c;
}

void web_config_free(struct web_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nusers; i++) {
        free(c->users[i]);
        free(c->hashes[i]);
    }
    free(c->users);
    free(c->hashes);
    free(c->cert_pem);
    if (c->key_pem)
        explicit_bzero(c->key_pem, strlen(c->key_pem));
    free(c->key_pem);
    if (c->cache)
        pthread_mutex_destroy(&((struct auth_cache *)c->cache)->lock);
    free(c->cache);
    free(c);
}

static bool same(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    uint8_t d = 0;

    for (size_t i = 0; i < n; i++)
        d |= x[i] ^ y[i];
    return d == 0;
}

/* What the cache keeps of credentials bcrypt accepted: SHA-256 of user,
 * password and the hash they matched. */
static bool digest_of(const char *user, const char *password, const char *hash, uint8_t out[32])
{
    size_t lu = strlen(user), lp = strlen(password), lh = strlen(hash);
    char *buf = malloc(lu + lp + lh + 3);
    bool ok;

    if (!buf)
        return false;
    memcpy(buf, user, lu + 1);
    memcpy(buf + lu + 1, password, lp + 1);
    memcpy(buf + lu + lp + 2, hash, lh + 1);
    ok = gnutls_hash_fast(GNUTLS_DIG_SHA256, buf, lu + lp + lh + 3, out) == 0;
    explicit_bzero(buf, lu + lp + lh + 3);
    free(buf);
    return ok;
}

bool web_config_allows(struct web_config *c, const char *user, const char *password)
{
    /* A well-formed hash no password matches: an unknown user costs a
     * bcrypt too, so timing does not tell which users exist. */
    static const char dummy[] = "$2y$10$BHKPWce749lLw52xmtbgye4.qlv/S3LI9odDNJrQv/EM4gGAk3WgK";
    struct auth_cache *cache = c->cache;
    const char *hash = dummy;
    uint8_t digest[32];
    bool known = false, ok = false;

    if (c->nusers == 0)
        return true;
    if (!user || !password)
        return false;
    for (size_t i = 0; i < c->nusers; i++)
        if (strcmp(c->users[i], user) == 0) {
            hash = c->hashes[i];
            known = true;
        }
    bool have_digest = digest_of(user, password, hash, digest);
    if (known && have_digest) {
        pthread_mutex_lock(&cache->lock);
        for (size_t i = 0; i < cache->n && !ok; i++)
            ok = same(cache->digest[i], digest, sizeof(digest));
        pthread_mutex_unlock(&cache->lock);
        if (ok)
            return true;
    }
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    if (!cd)
        return false;
    /* crypt_rn, not crypt_r: the same work, and no sanitizer intercepts it
     * (ASan's crypt_r interceptor calls a null function in our asan build). */
    const char *got = crypt_rn(password, hash, cd, (int)sizeof(*cd));
    ok = known && got && got[0] != '*' && strlen(got) == strlen(hash) && same(got, hash, strlen(hash));
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    if (ok && have_digest) {
        pthread_mutex_lock(&cache->lock);
        memcpy(cache->digest[cache->next], digest, sizeof(digest));
        cache->next = (cache->next + 1) % CACHE_SLOTS;
        if (cache->n < CACHE_SLOTS)
            cache->n++;
        pthread_mutex_unlock(&cache->lock);
    }
    return ok;
}
