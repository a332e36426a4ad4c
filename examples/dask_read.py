#!/usr/bin/env python3
"""Read a large set of photos on a Dask cluster: the photos are cut into shards, and each worker
runs `housenum read --files-from - --output OUT/shard-NNNNN.jsonl` on one shard at a time, so the
answers are `housenum read`'s own. Every shard file is resumable (`housenum read --output`): run
the same command again after a crash, a lost worker or Ctrl-C, and only what is missing is read.
When every shard is done, their lines are gathered into OUT/readings.jsonl in input order.

Usage:
    python3 examples/dask_read.py PHOTOS_DIR|LIST.txt --out OUT [--shard-size 1000]
        [--scheduler tcp://HOST:8786 | --workers 2] [--housenum PATH] [-- READ_OPTIONS...]

Without --scheduler, a local cluster of --workers single-threaded processes is started (one per
core). With one, the work goes to that cluster: start `dask scheduler` on one machine and
`dask worker tcp://HOST:8786 --nthreads 1` on each of the others (one worker thread per
machine: each `housenum read` already uses every core). Every worker needs the `housenum`
binary (--housenum, default: `housenum` on the PATH) and must see the photos and OUT at the same
paths (a shared file system, or object storage mounted the same way). READ_OPTIONS after `--`
go to every `housenum read` (e.g. `-- --protocol search`).

Needs: `pip install "dask[distributed]"`.
"""
import argparse
import json
import os
import subprocess
import sys

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def list_photos(source):
    """The photos of a directory (sorted, as `housenum read DIR` lists them), or the lines of a
    list file."""
    if os.path.isdir(source):
        names = sorted(os.listdir(source))
        return [os.path.join(source, n) for n in names
                if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
    with open(source) as f:
        return [line.strip() for line in f if line.strip()]


def read_shard(housenum, paths, output, options):
    """Run `housenum read` on one shard, appending to (or resuming) `output`. Returns the shard's
    file and `read`'s exit code (0, or 1/3/4 for photos that failed, abstained or hold no number:
    each recorded in its line, none fatal)."""
    listing = "".join(p + "\n" for p in paths).encode()
    run = subprocess.run([housenum, "read", "--files-from", "-", "--output", output, *options],
                         input=listing, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if run.returncode not in (0, 1, 3, 4):
        raise RuntimeError(f"{output}: housenum read exited {run.returncode}: "
                           f"{run.stderr.decode(errors='replace')[-2000:]}")
    return output, run.returncode


def main():
    argv = sys.argv[1:]
    options = []
    if "--" in argv:
        i = argv.index("--")
        argv, options = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", help="a directory of photos, or a file listing one path a line")
    ap.add_argument("--out", required=True, help="directory for the shard files and readings.jsonl")
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--scheduler", help="address of a running Dask scheduler")
    ap.add_argument("--workers", type=int, default=os.cpu_count(),
                    help="processes of the local cluster started without --scheduler")
    ap.add_argument("--housenum", default="housenum", help="the housenum binary on every worker")
    args = ap.parse_args(argv)
    from dask.distributed import Client, LocalCluster, as_completed

    photos = [os.path.abspath(p) for p in list_photos(args.source)]
    os.makedirs(args.out, exist_ok=True)
    out = os.path.abspath(args.out)
    shards = [(photos[i:i + args.shard_size], os.path.join(out, f"shard-{k:05d}.jsonl"))
              for k, i in enumerate(range(0, len(photos), args.shard_size))]
    if args.scheduler:
        client = Client(args.scheduler)
    else:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    futures = [client.submit(read_shard, args.housenum, paths, output, options, pure=False)
               for paths, output in shards]
    codes = []
    for done, (output, code) in as_completed(futures, with_results=True):
        codes.append(code)
        print(f"{output}: done (exit {code})", file=sys.stderr)
    client.close()
    # Gather: each photo's line, in input order (a resumed shard may hold lines out of order).
    lines = {}
    for _, output in shards:
        with open(output) as f:
            for line in f:
                lines[json.loads(line)["path"]] = line
    missing = [p for p in photos if p not in lines]
    if missing:
        sys.exit(f"error: {len(missing)} photo(s) have no reading, first {missing[0]}")
    with open(os.path.join(out, "readings.jsonl"), "w") as f:
        f.writelines(lines[p] for p in photos)
    print(f"{os.path.join(out, 'readings.jsonl')}: {len(photos)} photos in {len(shards)} shards",
          file=sys.stderr)
    # housenum read's exit codes: 1 beats 3 beats 4.
    sys.exit(next((c for c in (1, 3, 4) if c in codes), 0))


if __name__ == "__main__":
    main()
