/*
 * Deferred writes for one SQLite connection (db:defer in sluice.sqlite): a
 * thread of its own runs queued write statements in order, while the
 * caller's thread goes on. The sync engine's state database writes a row
 * per new document; on a first sync of a large table those INSERTs were a
 * sixth of the main thread's work, and the main thread is the one that runs
 * every connector and sink.
 *
 * The contract that keeps it simple: the queue is FIFO, and every other use
 * of the connection waits until the queue is empty (sl_sqlite_writer_wait),
 * so the connection is never used by two threads at once and a read sees
 * every write queued before it. The first failing op stops the queue: what
 * follows it is dropped (a COMMIT after a failed INSERT must not commit the
 * rest), and the next wait reports the failure once.
 */
#ifndef SL_DB_SQLITE_WRITER_H
#define SL_DB_SQLITE_WRITER_H

#include <sqlite3.h>
#include <stddef.h>

typedef struct sl_sqlite_writer sl_sqlite_writer;

/* One bound value of a queued statement. */
typedef struct sl_sqlite_val {
    enum { SL_SQV_NULL, SL_SQV_INT, SL_SQV_DOUBLE, SL_SQV_TEXT } type;
    sqlite3_int64 i;
    double d;
    const char *s; /* copied when queued */
    size_t n;
} sl_sqlite_val;

/* Most ops queued and not yet run before sl_sqlite_writer_push waits:
 * memory stays bounded when the caller is faster than the disk. */
#define SL_SQLITE_WRITER_MAX_QUEUED 64

sl_sqlite_writer *sl_sqlite_writer_new(sqlite3 *db);

/* Queues sql: with vals == NULL it runs as sqlite3_exec (one or more
 * statements, no parameters); otherwise as one statement with vals[0..n-1]
 * bound to ?1..?n. Copies everything. Returns 0, or -1 with err filled when
 * out of memory or when an earlier op failed (that failure, reported once;
 * nothing is queued). */
int sl_sqlite_writer_push(sl_sqlite_writer *w, const char *sql, size_t sql_len,
                          const sl_sqlite_val *vals, int n, char *err, size_t errlen);

/* Waits until every queued op has run. Returns 0, or -1 with the first
 * failure since the last report copied into err (err NULL: the failure
 * stays for the next caller that takes it). */
int sl_sqlite_writer_wait(sl_sqlite_writer *w, char *err, size_t errlen);

/* Waits for the queue, stops the thread, finalises its statements. The
 * connection stays open (the caller closes it). */
void sl_sqlite_writer_free(sl_sqlite_writer *w);

#endif
