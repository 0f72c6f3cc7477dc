#!/usr/bin/env python3
"""A private PostgreSQL for the benchmarks (bench/run.sh --cluster): the test fixture
tests/integration/postgres.py (initdb in a temp dir, a free loopback port, run as the
`postgres` user under root), kept up until this process gets SIGTERM or SIGINT.

  pg_server.py URL_FILE   writes the libpq URL of database `tokengate` to URL_FILE once
                          the server accepts connections (written whole: the caller can
                          poll for the file); stops the server and removes its directory
                          on SIGTERM/SIGINT.

The server's processes are this process's descendants, so bench/proctree.py on its pid
counts PostgreSQL's CPU time.
"""
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))

import postgres  # noqa: E402


def stop(_signum, _frame):
    raise SystemExit(0)


def main():
    url_file = sys.argv[1]
    # A handler (not a blocked signal, whose mask the server would inherit): a SIGTERM
    # during start-up still ends in close() below.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pg = None
    try:
        pg = postgres.PostgresServer()
        with open(url_file + ".tmp", "w") as f:
            f.write(pg.url() + "\n")
        os.rename(url_file + ".tmp", url_file)
        while True:
            signal.pause()
    finally:
        if pg is not None:
            pg.close()


if __name__ == "__main__":
    main()
