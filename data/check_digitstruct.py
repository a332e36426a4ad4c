#!/usr/bin/env python3
"""Read a digitStruct.mat with h5py the way the official SVHN tools do (object references
followed from /digitStruct/name and /digitStruct/bbox) and print `name<TAB>digits`, one line per
entry. CI runs it on a `housenum synth` folder and compares with `housenum`'s own reading.

  python3 data/check_digitstruct.py DIR/digitStruct.mat
"""
import sys

import h5py


def main(path):
    f = h5py.File(path, "r")
    ds = f["digitStruct"]
    for i in range(ds["name"].shape[0]):
        name = "".join(chr(int(c)) for c in f[ds["name"][i, 0]][:].flatten())
        bbox = f[ds["bbox"][i, 0]]
        lab = bbox["label"]
        if lab.shape == (1, 1):
            labels = [lab[0, 0]]
        else:
            labels = [f[lab[k, 0]][0, 0] for k in range(lab.shape[0])]
        print(f"{name}\t{''.join(str(int(l) % 10) for l in labels)}")


if __name__ == "__main__":
    main(sys.argv[1])
