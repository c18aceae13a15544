"""End-to-end test of `stalltrace metrics --web.config.file` (issue 14): TLS
and basic auth in the Prometheus exporter-toolkit format, scraped by
Debian's prometheus server.

- metrics_tls_prometheus: a live asyncio program recorded by `stalltrace
  run`; a self-signed certificate for 127.0.0.1 (openssl) and a bcrypt
  "$2y$" hash of the password (Python's crypt, libxcrypt) in web.yml. Over
  HTTPS a wrong password, no credentials and plain HTTP are refused and the
  right password is answered (promtool accepts it); then prometheus scrapes
  it over TLS with basic auth: its targets API says the job is up (and the
  job with a wrong password down, with 401), and a query of
  stalltrace_loop_iterations_total for the program's pid has a value.
"""

import base64
import http.client
import json
import os
import shutil
import ssl
import time
import urllib.request
import warnings

from e2e_lib import Proc, Skip, clean_env, expect, free_port, run_cmd, start_metrics, test

PASSWORD = "scrape-me-7"


def bcrypt_hash(password):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            raise Skip("Python's crypt module is missing (needed for a bcrypt hash)")
    if crypt.METHOD_BLOWFISH not in crypt.methods:
        raise Skip("libcrypt here has no bcrypt")
    h = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10))
    return "$2y$" + h[4:]          # the prefix htpasswd -B writes; the same algorithm


def https_get(port, cafile, user=None, password=None):
    ctx = ssl.create_default_context(cafile=cafile)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    headers = {}
    if user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    try:
        conn.request("GET", "/metrics", headers=headers)
        r = conn.getresponse()
        return r.status, r.getheader("WWW-Authenticate") or "", r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def api(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return json.loads(r.read())


@test("metrics_tls_prometheus")
def t_tls_prometheus(cfg, tmpdir):
    prometheus, promtool, openssl = shutil.which("prometheus"), shutil.which("promtool"), shutil.which("openssl")
    if not prometheus or not openssl:
        raise Skip("needs prometheus and openssl (Debian packages prometheus, openssl)")
    cert, key = os.path.join(tmpdir, "cert.pem"), os.path.join(tmpdir, "key.pem")
    rc, _, err = run_cmd([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                          "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
    expect(rc == 0, "openssl req failed: %s" % err[-300:])
    web = os.path.join(tmpdir, "web.yml")
    with open(web, "w") as fh:
        fh.write("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"
                 "basic_auth_users:\n  prometheus: %s\n" % bcrypt_hash(PASSWORD))

    dumps = os.path.join(tmpdir, "dumps")
    os.mkdir(dumps)
    live = Proc([cfg.stalltrace, "run", "-o", os.path.join(dumps, "%p.dump"), "--",
                 "/usr/bin/python3", "-c",
                 "import asyncio\nasync def main():\n print('up', flush=True)\n"
                 " while True:\n  await asyncio.sleep(0.005)\nasyncio.run(main())"], env=clean_env())
    m = prom = None
    try:
        live.wait_for_line(r"^up$", 20)
        time.sleep(0.3)
        names = [f for f in os.listdir(dumps) if f.endswith(".dump")]
        expect(len(names) == 1, "the live program left %r" % names)
        pid = int(names[0].split(".")[0])
        m, port = start_metrics(cfg, os.path.join(dumps, "*.dump"), ["--web.config.file", web])
        expect(any("(TLS)" in l for l in m.out), "metrics does not say it serves TLS: %r" % m.out)

        status, auth, _ = https_get(port, cert, "prometheus", "not-the-password")
        expect(status == 401 and auth.startswith("Basic"), "a wrong password got %d (%r)" % (status, auth))
        status, _, _ = https_get(port, cert)
        expect(status == 401, "no credentials got %d" % status)
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            plain.request("GET", "/metrics")
            got = plain.getresponse().status
        except (OSError, http.client.HTTPException):
            got = None
        finally:
            plain.close()
        expect(got != 200, "plain HTTP was answered 200 on the TLS port")
        status, _, body = https_get(port, cert, "prometheus", PASSWORD)
        expect(status == 200 and "stalltrace_loop_iterations_total" in body, "the right password got %d" % status)
        if promtool:
            path = os.path.join(tmpdir, "scrape.prom")
            with open(path, "w") as fh:
                fh.write(body)
            rc, out, err = run_cmd(["sh", "-c", '"$0" check metrics < "$1"', promtool, path])
            expect(rc == 0, "promtool check metrics rejects the scrape: %s" % (out + err)[:400])

        web_port = free_port()
        conf = os.path.join(tmpdir, "prometheus.yml")
        job = ("  - job_name: %s\n    scheme: https\n    scrape_interval: 1s\n"
               "    tls_config:\n      ca_file: %s\n"
               "    basic_auth:\n      username: prometheus\n      password: %s\n"
               "    static_configs:\n      - targets: ['127.0.0.1:%d']\n")
        with open(conf, "w") as fh:
            fh.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n")
            fh.write(job % ("stalltrace", cert, PASSWORD, port))
            fh.write(job % ("stalltrace_wrong", cert, "wrong-password", port))
        prom = Proc([prometheus, "--config.file=" + conf, "--storage.tsdb.path=" + os.path.join(tmpdir, "tsdb"),
                     "--web.listen-address=127.0.0.1:%d" % web_port], env=clean_env())
        deadline = time.monotonic() + 90
        health, value = {}, None
        while time.monotonic() < deadline:
            time.sleep(1)
            if prom.popen.poll() is not None:
                break
            try:
                targets = api(web_port, "/api/v1/targets")["data"]["activeTargets"]
                health = {t["labels"]["job"]: (t["health"], t.get("lastError", "")) for t in targets}
                q = api(web_port, "/api/v1/query?query=stalltrace_loop_iterations_total%7Bpid%3D%22" +
                        str(pid) + "%22%7D")["data"]["result"]
            except (OSError, ValueError, KeyError):
                continue
            if health.get("stalltrace", ("",))[0] == "up" and q and \
                    health.get("stalltrace_wrong", ("",))[0] == "down":
                value = float(q[0]["value"][1])
                break
        expect(value is not None, "prometheus never saw the target up with a series: %r%s"
               % (health, prom.tail()))
        expect("401" in health["stalltrace_wrong"][1], "the wrong password's job failed otherwise: %r"
               % (health["stalltrace_wrong"],))
    finally:
        if prom:
            prom.close()
        if m:
            m.close()
        live.close()
    return ("prometheus over TLS + basic auth: up, stalltrace_loop_iterations_total{pid=\"%d\"} = %g; wrong "
            "password job down (%s); curl-like checks: 401 wrong/no password, plain HTTP refused"
            % (pid, value, health["stalltrace_wrong"][1][:60]))
