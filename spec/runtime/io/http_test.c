/* sluice.http against a real server: spec/fixtures/httpd.py, started here
 * twice (plain and TLS, with a CA and certificates made by the openssl CLI in
 * a temporary folder). Each case is a Lua chunk run as the root task of a
 * fresh VM, so pooling, concurrency and cancellation go through the real
 * scheduler and loop. Ports and paths reach the chunks through SL_HTTP_*
 * environment variables. */
#include "harness.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *prelude =
    "local http = require 'sluice.http'\n"
    "local task = require 'sluice.task'\n"
    "local json = require 'cjson'\n"
    "local base = 'http://127.0.0.1:' .. os.getenv('SL_HTTP_PORT')\n"
    "local tls = 'https://127.0.0.1:' .. os.getenv('SL_HTTPS_PORT')\n"
    "local tmp = os.getenv('SL_HTTP_TMP')\n"
    "local function get(path, o)\n"
    "  o = o or {}; o.url = base .. path\n"
    "  return http.request(o)\n"
    "end\n"
    "local function echo(o)\n"
    "  local res, err = http.request(o)\n"
    "  assert(res, err)\n"
    "  assert(res.status == 200, res.status)\n"
    "  return json.decode(res.body), res\n"
    "end\n"
    "local function rss_kb()\n"
    "  for line in io.lines('/proc/self/status') do\n"
    "    local kb = line:match('^VmRSS:%s+(%d+)')\n"
    "    if kb then return tonumber(kb) end\n"
    "  end\n"
    "end\n";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs prelude + body; returns the seconds it took. */
static double run(const char *name, const char *body)
{
    size_t n = strlen(prelude) + strlen(body) + 1;
    char *chunk = malloc(n);
    if (!chunk)
        abort();
    snprintf(chunk, n, "%s%s", prelude, body);
    double t0 = now_s();
    sl_test_lua(name, chunk);
    free(chunk);
    return now_s() - t0;
}

/* Starts the fixture with extra arguments; returns its pid and sets *port,
 * or returns -1. */
static pid_t start_fixture(const char *src, char *const extra[], int *port)
{
    char script[4200];
    snprintf(script, sizeof script, "%s/spec/fixtures/httpd.py", src);
    int fd[2];
    if (pipe(fd) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        char *argv[16] = {"python3", script, "0"};
        int i = 3;
        for (int j = 0; extra && extra[j] && i < 15; j++)
            argv[i++] = extra[j];
        argv[i] = NULL;
        close(fd[0]);
        dup2(fd[1], 1);
        close(fd[1]);
        execvp("python3", argv);
        perror("python3");
        _exit(127);
    }
    close(fd[1]);
    FILE *f = fdopen(fd[0], "r");
    if (!f || fscanf(f, "%d", port) != 1) {
        fprintf(stderr, "fixture %s did not start\n", script);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    return pid;
}

static void stop_fixture(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
}

/* Makes a CA, a server certificate for 127.0.0.1/localhost and a client
 * certificate, all signed by the CA, in dir. */
static int make_certs(const char *dir)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "(set -e; cd '%s'; "
             "K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'; "
             "openssl req -x509 $K -keyout ca.key -out ca.pem -days 2 -subj /CN=sluice-test-ca; "
             "openssl req $K -keyout server.key -out server.csr -subj /CN=localhost; "
             "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > server.ext; "
             "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out server.pem -days 2 -extfile server.ext; "
             "openssl req $K -keyout client.key -out client.csr -subj /CN=sluice-client; "
             "printf 'extendedKeyUsage=clientAuth\\n' > client.ext; "
             "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out client.pem -days 2 -extfile client.ext) >/dev/null 2>&1",
             dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void plain_cases(void)
{
    run("get", "local res = assert(get('/echo'))\n"
               "local e = json.decode(res.body)\n"
               "assert(res.status == 200)\n"
               "assert(res.headers['content-type'] == 'application/json')\n"
               "assert(res.headers['content-length'] == tostring(#res.body))\n"
               "assert(res.bytes == #res.body)\n"
               "assert(res.http_version == '1.1', res.http_version)\n"
               "assert(res.url == base .. '/echo', res.url)\n"
               "assert(e.method == 'GET' and e.path == '/echo' and e.body == '')\n"
               "assert(e.headers['user-agent'] == 'sluice')\n"
               "assert(e.headers['expect'] == nil)\n"
               "assert(e.headers['accept-encoding']:find('gzip', 1, true))\n");

    run("methods_and_bodies",
        "local body = 'a=1&b=2\\0tail'\n"
        "local e = echo{url = base .. '/echo', body = body}\n"
        "assert(e.method == 'POST' and e.body == body and e.body_len == 12)\n"
        "assert(e.headers['content-length'] == '12')\n"
        "e = echo{url = base .. '/echo', method = 'PUT', body = 'x'}\n"
        "assert(e.method == 'PUT' and e.body == 'x')\n"
        "e = echo{url = base .. '/echo', method = 'DELETE'}\n"
        "assert(e.method == 'DELETE' and e.body_len == 0)\n"
        "e = echo{url = base .. '/echo', method = 'POST'}\n"
        "assert(e.method == 'POST' and e.headers['content-length'] == '0')\n"
        "local res = assert(get('/echo', {method = 'HEAD'}))\n"
        "assert(res.status == 200 and res.body == '' and res.bytes == 0)\n"
        "assert(tonumber(res.headers['content-length']) > 100)\n");

    run("request_headers",
        "local e = echo{url = base .. '/echo', headers = {\n"
        "  ['X-Number'] = 42, ['X-Empty'] = '', ['User-Agent'] = 'me/1',\n"
        "  Accept = 'application/json'}}\n"
        "assert(e.headers['x-number'] == '42')\n"
        "assert(e.headers['x-empty'] == '')\n"
        "assert(e.headers['user-agent'] == 'me/1')\n"
        "assert(e.headers['accept'] == 'application/json')\n");

    run("error_statuses_are_responses",
        "for _, s in ipairs{404, 503, 429, 204} do\n"
        "  local res, err = get('/status/' .. s)\n"
        "  assert(res, err)\n"
        "  assert(res.status == s)\n"
        "  assert(res.body == (s == 204 and '' or 'status ' .. s), res.body)\n"
        "  assert(res.headers['content-length'] == (s ~= 204 and tostring(#res.body) or nil))\n"
        "end\n"
        "local res = assert(get('/nowhere'))\n"
        "assert(res.status == 404 and res.body == 'no such route')\n");

    run("response_headers",
        "local res = assert(get('/headers/dup'))\n"
        "assert(res.headers['x-dup'] == '1, 2', res.headers['x-dup'])\n"
        "assert(res.headers['set-cookie'] == 'a=1, b=2')\n"
        "assert(res.headers['X-Dup'] == nil)\n"
        "local r, err = get('/headers/huge/5000')\n"
        "assert(r == nil and err == 'headers too large', err)\n"
        "res = assert(get('/headers/huge/1000'))\n"
        "assert(res.headers['x-filler-999'] == string.rep('f', 80))\n");

    /* 100 tasks, each waiting on a 500 ms answer, finish together */
    run("concurrent_100",
        "local ts, t0 = {}, task.now()\n"
        "for i = 1, 100 do\n"
        "  ts[i] = task.spawn(function() return get('/delay/500') end)\n"
        "end\n"
        "for i = 1, 100 do\n"
        "  local ok, res, err = ts[i]:join()\n"
        "  assert(ok and res, err)\n"
        "  assert(res.status == 200 and res.body == 'delayed 500')\n"
        "end\n"
        "local dt = task.now() - t0\n"
        "assert(dt >= 0.5 and dt < 1.5, dt)\n");

    run("keep_alive_reuse",
        "local a = echo{url = base .. '/echo'}\n"
        "local b = echo{url = base .. '/echo'}\n"
        "local _, c = task.spawn(function() return echo{url = base .. '/echo'} end):join()\n"
        "assert(a.conn == b.conn and b.conn == c.conn, a.conn .. ' ' .. b.conn .. ' ' .. c.conn)\n"
        "assert(a.peer_port == c.peer_port)\n"
        "local d = echo{url = base .. '/echo', body = 'post reuses too'}\n"
        "assert(d.conn == a.conn)\n");

    /* every VM so far closed its pool, so once the server threads still
     * sleeping for cancelled or timed-out requests are done, only this
     * chunk's connection is open */
    run("pool_closed_with_vm",
        "local ts = {}\n"
        "for i = 1, 3 do ts[i] = task.spawn(get, '/delay/50') end\n"
        "for i = 1, 3 do assert(select(2, ts[i]:join()).status == 200) end\n");
    run("pool_closed_with_vm_check",
        "local e, t0 = nil, task.now()\n"
        "repeat\n"
        "  task.sleep(0.1)\n"
        "  e = echo{url = base .. '/conns'}\n"
        "until e.open == 1 or task.now() - t0 > 5\n"
        "assert(e.open == 1, 'open connections: ' .. e.open)\n");

    double dt = run("timeout", "local t0 = task.now()\n"
                               "local res, err = get('/delay/3000', {timeout = 0.3})\n"
                               "local dt = task.now() - t0\n"
                               "assert(res == nil and err == 'timeout', err)\n"
                               "assert(dt >= 0.25 and dt < 1.5, dt)\n");
    CHECK(dt < 2.5);

    run("connect_errors",
        "local res, err = http.request{url = 'http://127.0.0.1:1/'}\n"
        "assert(res == nil and err == 'connection refused', err)\n"
        "res, err = http.request{url = 'http://sluice-test.invalid/'}\n"
        "assert(res == nil and err == 'could not resolve host', err)\n"
        "res, err = http.request{url = 'file:///etc/passwd'}\n"
        "assert(res == nil and err == 'unsupported protocol', err)\n"
        "res, err = http.request{url = 'http://127.0.0.1\\0.evil/'}\n"
        "assert(res == nil and err == 'malformed url', err)\n"
        "res, err = http.request{url = 'http://[::1'}\n"
        "assert(res == nil and err == 'malformed url', err)\n"
        "res, err = get('/drop')\n"
        "assert(res == nil and err == 'connection closed', err)\n"
        "res, err = get('/garbage')\n"
        "assert(res == nil and err == 'malformed response', err)\n");

    run("gzip",
        "local res = assert(get('/gzip'))\n"
        "assert(res.body == string.rep('hello gzip ', 1000))\n"
        "assert(res.bytes == 11000)\n"
        "assert(res.headers['content-encoding'] == 'gzip')\n"
        "res = assert(get('/gzip', {decompress = false}))\n"
        "assert(res.body:byte(1) == 31 and res.body:byte(2) == 139)\n"
        "assert(res.bytes == #res.body and #res.body < 200)\n"
        "local e = echo{url = base .. '/echo', decompress = false}\n"
        "assert(e.headers['accept-encoding'] == nil)\n");

    run("output_file_bounded_memory",
        "local path = tmp .. '/big.bin'\n"
        "get('/bytes/1000', {output = path})\n" /* warm the pool */
        "local before = rss_kb()\n"
        "local res, err = get('/bytes/20971520', {output = path})\n"
        "assert(res, err)\n"
        "local grew = rss_kb() - before\n"
        "assert(grew < 8 * 1024, 'rss grew by ' .. grew .. ' KiB')\n"
        "assert(res.status == 200 and res.body == nil and res.bytes == 20971520)\n"
        "local f = assert(io.open(path, 'rb'))\n"
        "assert(f:seek('end') == 20971520)\n"
        "f:seek('set', 65536 * 7 + 250)\n"
        "assert(f:read(8) == '\\250\\251\\252\\253\\254\\255\\0\\1')\n"
        "f:close()\n"
        "os.remove(path)\n");

    run("output_errors",
        "local res, err = get('/bytes/10', {output = tmp .. '/no/such/dir/x'})\n"
        "assert(res == nil and err == 'cannot open output: no such file or directory', err)\n"
        "local path = tmp .. '/partial.bin'\n"
        "res, err = get('/drop', {output = path})\n"
        "assert(res == nil and err == 'connection closed', err)\n"
        "assert(io.open(path) == nil, 'a failed download leaves no file')\n"
        "res, err = get('/bytes/5000', {output = path, max_body = 100})\n"
        "assert(res == nil and err == 'body too large', err)\n"
        "assert(io.open(path) == nil)\n");

    run("max_body",
        "local res, err = get('/bytes/100000', {max_body = 1000})\n"
        "assert(res == nil and err == 'body too large', err)\n"
        "res, err = get('/chunked/100000', {max_body = 1000})\n"
        "assert(res == nil and err == 'body too large', err)\n"
        "res = assert(get('/bytes/1000', {max_body = 1000}))\n"
        "assert(#res.body == 1000 and res.body:sub(1, 3) == '\\0\\1\\2')\n"
        "res = assert(get('/chunked/100000', {max_body = 100000}))\n"
        "assert(#res.body == 100000)\n");

    run("redirects",
        "local res = assert(get('/redirect/3'))\n"
        "assert(res.status == 302 and res.headers.location == '/redirect/2')\n"
        "res = assert(get('/redirect/3', {follow_redirects = true}))\n"
        "assert(res.status == 200 and res.body == 'done')\n"
        "assert(res.url == base .. '/redirect/0', res.url)\n"
        "assert(res.headers.location == nil)\n"
        "res = assert(get('/redirect/5', {follow_redirects = true}))\n"
        "assert(res.status == 200)\n"
        "local r, err = get('/redirect/6', {follow_redirects = true})\n"
        "assert(r == nil and err == 'too many redirects', err)\n");

    run("proxy",
        "local e = echo{url = 'http://sluice-proxied.invalid/echo', proxy = base}\n"
        "assert(e.path == 'http://sluice-proxied.invalid/echo', e.path)\n"
        "local res, err = http.request{url = 'http://x.invalid/', proxy = 'http://127.0.0.1:1'}\n"
        "assert(res == nil and err == 'connection refused', err)\n");

    /* a body over libcurl's 1 MB Expect threshold goes out at once */
    run("post_10mb_no_expect",
        "local body = string.rep('0123456789abcdef', 655360)\n"
        "local t0 = task.now()\n"
        "local e = echo{url = base .. '/upload', body = body}\n"
        "assert(e.len == 10485760)\n"
        "assert(e.sha256 == '3f5862181da2da49ce240dea1c5cfdafda27f0864f7576b59b0b437c3e463bfd')\n"
        "assert(e.expect == json.null, tostring(e.expect))\n"
        "assert(task.now() - t0 < 0.9)\n");

    dt = run("cancel_mid_request",
             "local reached = false\n"
             "local t = task.spawn(function()\n"
             "  local res = get('/delay/3000'); reached = true; return res end)\n"
             "task.sleep(0.1)\n"
             "assert(t:status() == 'waiting')\n"
             "assert(t:cancel() == true)\n"
             "local ok, err = t:join()\n"
             "assert(ok == nil and err == 'cancelled')\n"
             "local res = assert(get('/status/200'))\n"
             "assert(res.status == 200)\n"
             "local ts = {}\n"
             "for i = 1, 20 do ts[i] = task.spawn(get, '/delay/3000') end\n"
             "task.sleep(0.1)\n"
             "for i = 1, 20 do assert(ts[i]:cancel()) end\n"
             "task.sleep(0.05)\n"
             "assert(not reached)\n");
    /* the cancelled transfers do not keep the loop alive for their 3 s */
    CHECK(dt < 1.5);

    run("misuse_raises",
        "local function raises(opts, pat)\n"
        "  local ok, err = pcall(http.request, opts)\n"
        "  assert(not ok and err:find(pat, 1, true), tostring(err))\n"
        "end\n"
        "raises({}, 'opts.url: string expected, got nil')\n"
        "raises({url = 5}, 'opts.url: string expected, got number')\n"
        "raises({url = base, timeout = 'x'}, 'opts.timeout: number expected, got string')\n"
        "raises({url = base, timeout = -1}, 'opts.timeout: out of range')\n"
        "raises({url = base, max_body = -5}, 'opts.max_body: out of range')\n"
        "raises({url = base, insecure = 1}, 'opts.insecure: boolean expected, got number')\n"
        "raises({url = base, headers = 'x'}, 'opts.headers: table expected, got string')\n"
        "raises({url = base, headers = {'x'}}, 'opts.headers: names must be strings')\n"
        "raises({url = base, headers = {['a b'] = 'x'}}, \"bad header name 'a b'\")\n"
        "raises({url = base, headers = {X = 'a\\r\\nEvil: 1'}}, 'opts.headers.X: value holds a line break')\n"
        "raises({url = base, headers = {X = true}}, 'opts.headers.X: string expected, got boolean')\n"
        "raises({url = base, method = 'GET /x HTTP/1.1\\r\\n'}, 'opts.method: not an HTTP method token')\n"
        "raises({url = base, method = 'HEAD', body = 'x'}, 'a HEAD request cannot have a body')\n"
        "raises({url = base, follow = true}, \"unknown option 'follow'\")\n"
        "local ok, err = pcall(http.request, 'http://x')\n"
        "assert(not ok and err:find('table expected', 1, true), err)\n"
        "local co = coroutine.wrap(function() return pcall(http.request, {url = base}) end)\n"
        "ok, err = co()\n"
        "assert(not ok and err:find('not inside a task', 1, true), err)\n");

    run("escape",
        "assert(http.escape('a b/c?d=e&f') == 'a%20b%2Fc%3Fd%3De%26f')\n"
        "assert(http.escape('AZaz09-._~') == 'AZaz09-._~')\n"
        "assert(http.escape('\\0\\255\\195\\188+') == '%00%FF%C3%BC%2B')\n"
        "assert(http.escape('') == '')\n"
        "assert(http.unescape('a%20b%2fc%2F') == 'a b/c/')\n"
        "assert(http.unescape('100%') == '100%')\n"
        "assert(http.unescape('%zz%4g%4') == '%zz%4g%4')\n"
        "assert(http.unescape('a+b') == 'a+b')\n"
        "assert(http.unescape('%00') == '\\0')\n"
        "local all = {}\n"
        "for i = 0, 255 do all[#all + 1] = string.char(i) end\n"
        "all = table.concat(all)\n"
        "assert(http.unescape(http.escape(all)) == all)\n"
        "assert(#http.escape(all) == 66 + 190 * 3)\n"
        "assert(not pcall(http.escape, {}))\n");
}

static void tls_cases(void)
{
    run("tls_verified",
        "local ca = tmp .. '/ca.pem'\n"
        "local e, res = echo{url = tls .. '/echo', ca_file = ca}\n"
        "assert(e.tls == true and e.client_cn == json.null)\n"
        "assert(res.url == tls .. '/echo')\n"
        "e = echo{url = 'https://localhost:' .. os.getenv('SL_HTTPS_PORT') .. '/echo', ca_file = ca}\n"
        "assert(e.tls == true)\n"
        "local a = echo{url = tls .. '/echo', ca_file = ca}\n"
        "local b = echo{url = tls .. '/echo', ca_file = ca}\n"
        "assert(a.conn == b.conn, 'tls connections are reused')\n");

    run("tls_unverified_fails",
        "local res, err = http.request{url = tls .. '/echo'}\n"
        "assert(res == nil)\n"
        "assert(err == 'ssl certificate problem: self-signed certificate in certificate chain', err)\n"
        "res, err = http.request{url = tls .. '/echo', ca_file = tmp .. '/client.pem'}\n"
        "assert(res == nil and err:find('^ssl certificate problem: '), err)\n"
        /* libcurl accepts a pinned leaf certificate as the trust anchor */
        "assert(echo{url = tls .. '/echo', ca_file = tmp .. '/server.pem'}.tls)\n"
        "res, err = http.request{url = tls .. '/echo', ca_file = tmp .. '/missing.pem'}\n"
        "assert(res == nil and err:find('missing.pem', 1, true), err)\n");

    run("tls_insecure",
        "local e = echo{url = tls .. '/echo', insecure = true}\n"
        "assert(e.tls == true and e.method == 'GET')\n");

    run("tls_client_cert",
        "local e = echo{url = tls .. '/echo', ca_file = tmp .. '/ca.pem',\n"
        "  client_cert = tmp .. '/client.pem', client_key = tmp .. '/client.key'}\n"
        "assert(e.client_cn == 'sluice-client', tostring(e.client_cn))\n"
        "local res, err = http.request{url = tls .. '/echo', ca_file = tmp .. '/ca.pem',\n"
        "  client_cert = tmp .. '/missing.pem'}\n"
        "assert(res == nil and err:find('certificate', 1, true), err)\n");

    run("tls_concurrent",
        "local ts = {}\n"
        "for i = 1, 30 do ts[i] = task.spawn(function()\n"
        "  return http.request{url = tls .. '/delay/300', ca_file = tmp .. '/ca.pem'} end) end\n"
        "for i = 1, 30 do\n"
        "  local ok, res, err = ts[i]:join()\n"
        "  assert(ok and res and res.body == 'delayed 300', err)\n"
        "end\n");
}

int main(void)
{
    const char *src = getenv("SLUICE_SOURCE_DIR");
    if (!src || !*src)
        src = ".";
    signal(SIGPIPE, SIG_IGN);
    /* requests use opts.proxy only: a proxy in the environment that would
     * refuse everything must change nothing */
    setenv("http_proxy", "http://127.0.0.1:1", 1);
    setenv("https_proxy", "http://127.0.0.1:1", 1);
    setenv("ALL_PROXY", "http://127.0.0.1:1", 1);

    char tmp[] = "/tmp/sluice-http-test-XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    setenv("SL_HTTP_TMP", tmp, 1);

    int port = 0, tls_port = 0;
    pid_t plain = start_fixture(src, NULL, &port);
    CHECK(plain > 0);
    if (make_certs(tmp) != 0) {
        fprintf(stderr, "openssl could not make the test certificates\n");
        sl_test_failures++;
    }
    char cert[4200], key[4200], ca[4200];
    snprintf(cert, sizeof cert, "%s/server.pem", tmp);
    snprintf(key, sizeof key, "%s/server.key", tmp);
    snprintf(ca, sizeof ca, "%s/ca.pem", tmp);
    char *tls_args[] = {"--tls", cert, key, "--client-ca", ca, NULL};
    pid_t secure = start_fixture(src, tls_args, &tls_port);
    CHECK(secure > 0);

    char buf[32];
    snprintf(buf, sizeof buf, "%d", port);
    setenv("SL_HTTP_PORT", buf, 1);
    snprintf(buf, sizeof buf, "%d", tls_port);
    setenv("SL_HTTPS_PORT", buf, 1);

    if (plain > 0) {
        /* twice, so state leaking from one run into the next shows */
        plain_cases();
        plain_cases();
    }
    if (secure > 0)
        tls_cases();

    stop_fixture(plain);
    stop_fixture(secure);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return sl_test_done("http");
}
