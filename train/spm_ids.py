"""Token ids of a text file by Python sentencepiece (the oracle of bitllm's tokenizer on our models).

usage: /usr/bin/python3 train/spm_ids.py FILE [--model train/tokenizer.model] [--sha256]
       /usr/bin/python3 train/spm_ids.py --stdin [--model ...]   (a JSON array of strings on stdin)
Prints the ids (no BOS) as one JSON array, or with --sha256 {"count", "sha256"} where sha256 is over the
ids as decimal numbers joined by ','; with --stdin one JSON array of id arrays.
"""
import argparse
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer as tok  # noqa: E402


def ids_digest(ids):
    return hashlib.sha256(','.join(str(i) for i in ids).encode('ascii')).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('file', nargs='?')
    ap.add_argument('--stdin', action='store_true')
    ap.add_argument('--model', default=tok.DEFAULT_MODEL)
    ap.add_argument('--sha256', action='store_true')
    a = ap.parse_args()
    sp = tok.load(a.model)
    if a.stdin:
        print(json.dumps([sp.encode(t) for t in json.load(sys.stdin)], separators=(',', ':')))
        return
    if not a.file:
        ap.error('give FILE or --stdin')
    with open(a.file, encoding='utf-8') as f:
        ids = sp.encode(f.read())
    if a.sha256:
        print(json.dumps({'count': len(ids), 'sha256': ids_digest(ids)}))
    else:
        print(json.dumps(ids, separators=(',', ':')))


if __name__ == '__main__':
    main()
