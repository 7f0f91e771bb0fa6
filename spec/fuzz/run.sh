#!/bin/sh
# Builds the libFuzzer targets with clang (ASan+UBSan+fuzzer) and runs them.
#   spec/fuzz/run.sh            short run, as CI does: 20 s per target
#   spec/fuzz/run.sh 3600       the long run: one hour per target
#   SL_FUZZ_PDF=1 spec/fuzz/run.sh   also send fuzzed PDFs to the worker
# Corpora live in spec/.tmp/fuzz/<target> (gitignored), seeded from the
# extraction fixtures; crashes are written to spec/.tmp/fuzz/crash-*.
# Exits 0 with a notice when clang or its fuzzer runtime is missing.
set -eu
cd "$(dirname "$0")/../.."
SECS=${1:-20}
OUT=spec/.tmp/fuzz
CC=${FUZZ_CC:-clang}
if ! command -v "$CC" >/dev/null 2>&1; then
    echo "fuzz: $CC not found, skipped"; exit 0
fi
mkdir -p "$OUT/obj"
if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n){return 0;}' |
    "$CC" -x c -fsanitize=fuzzer - -o "$OUT/probe" 2>/dev/null; then
    echo "fuzz: $CC has no libFuzzer runtime (libclang-rt-14-dev), skipped"; exit 0
fi
PKGS="luajit libuv libcurl yaml-0.1 sqlite3 openssl zlib libpq libmariadb hiredis libxml-2.0 libzip libdeflate expat uchardet libxxhash poppler-glib"
CFLAGS="-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fsanitize=fuzzer-no-link -DSLUICE_WITH_POPPLER=1 -Iruntime $(pkg-config --cflags $PKGS)"
LIBS="$(pkg-config --libs $PKGS) -lmagic /usr/lib/$(gcc -print-multiarch)/liblua5.1-cjson.a -lm"
# the runtime, instrumented once; objects rebuilt only when a source changed
OBJS=""
for src in $(find runtime -name '*.c' ! -name main.c | sort); do
    obj="$OUT/obj/$(echo "$src" | tr / _).o"
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ runtime/extract/extract.h -nt "$obj" ]; then
        "$CC" $CFLAGS -c "$src" -o "$obj"
    fi
    OBJS="$OBJS $obj"
done
python3 spec/fixtures/extract/make_fixtures.py "$OUT/seed-files" >/dev/null
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1"
status=0
for t in extract yaml sheet; do
    "$CC" $CFLAGS -fsanitize=fuzzer "spec/fuzz/${t}_fuzz.c" $OBJS $LIBS -o "$OUT/$t"
    mkdir -p "$OUT/corpus-$t"
    if [ "$t" = extract ]; then
        # seeds: every fixture behind a 0 byte (detect by content)
        for f in "$OUT"/seed-files/*; do
            { printf '\000'; head -c 65536 "$f"; } > "$OUT/corpus-$t/seed-$(basename "$f")"
        done
    elif [ "$t" = sheet ]; then
        # seeds: the worksheets of the generated and (if fetched) the bench
        # workbooks, behind a piece-size byte and a no-cap byte
        python3 spec/fixtures/extract/make_office.py "$OUT/seed-office" >/dev/null
        python3 - "$OUT/corpus-$t" "$OUT/seed-office" bench/.tmp/office-corpus/x <<'EOF'
import os, sys, zipfile
out, n = sys.argv[1], 0
for top in sys.argv[2:]:
    for root, _, files in os.walk(top):
        for f in files:
            if not f.endswith(".xlsx"):
                continue
            try:
                z = zipfile.ZipFile(os.path.join(root, f))
            except zipfile.BadZipFile:
                continue
            for i in z.infolist():
                if i.filename.startswith("xl/worksheets/") and i.filename.endswith(".xml"):
                    data = z.read(i)[:65000]
                    for head in (b"\x03\x00", b"\x00\x85"):
                        n += 1
                        with open(os.path.join(out, "seed-%d" % n), "wb") as o:
                            o.write(head + data)
EOF
    else
        cp spec/fixtures/*.yml "$OUT/corpus-$t/" 2>/dev/null || true
        printf 'a: &x [1, *x]\nb: {c: d}\n' > "$OUT/corpus-$t/seed-alias.yml"
    fi
    echo "== fuzz $t for ${SECS}s"
    "$OUT/$t" -max_total_time="$SECS" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$OUT/crash-$t-" -print_final_stats=1 "$OUT/corpus-$t" \
        2>"$OUT/$t.log" || { status=1; tail -50 "$OUT/$t.log"; }
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$OUT/$t.log" || true
done
exit $status
