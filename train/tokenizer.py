"""SentencePiece tokenizer of the tiny reference models (docs/training.md).

BPE with byte fallback, identity normalization (the text is kept byte for byte: no NFKC, no whitespace
clean-up) and SentencePiece's dummy prefix: exactly what llama.cpp's llama-spm tokenizer (lib/tokenizer/spm.ts)
reproduces from the pieces, scores and types stored in a GGUF.

usage: /usr/bin/python3 train/tokenizer.py [--corpus .cache/corpus] [--out train/tokenizer.model] [--vocab 4096]
"""
import argparse
import hashlib
import io
import os
import sys

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(ROOT, 'train', 'tokenizer.model')
CHUNK = 1000  # characters per training "sentence" (SentencePiece skips sentences over max_sentence_length)


def training_sentences(text):
    """Lines of the training text cut at spaces into chunks of at most ~CHUNK characters.

    A chunk boundary replaces one space; SentencePiece's dummy prefix stands for it, so every word is seen
    with the U+2581 it carries in running text."""
    for line in text.split('\n'):
        while len(line) > CHUNK:
            cut = line.rfind(' ', 0, CHUNK)
            if cut <= 0:
                cut = CHUNK
            yield line[:cut]
            line = line[cut + 1 if line[cut:cut + 1] == ' ' else cut:]
        if line:
            yield line


def train(corpus_dir, out, vocab_size):
    with open(os.path.join(corpus_dir, 'train.txt'), encoding='utf-8') as f:
        text = f.read()
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=training_sentences(text),
        model_writer=proto,
        model_type='bpe',
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name='identity',
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        max_sentence_length=1 << 14,
        num_threads=2,
        minloglevel=2,
    )
    data = proto.getvalue()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'wb') as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def load(path=DEFAULT_MODEL):
    if not os.path.exists(path):
        sys.exit(f'{path} is missing: train it with /usr/bin/python3 train/tokenizer.py')
    return spm.SentencePieceProcessor(model_file=path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--corpus', default=os.path.join(ROOT, '.cache', 'corpus'))
    ap.add_argument('--out', default=DEFAULT_MODEL)
    ap.add_argument('--vocab', type=int, default=4096)
    a = ap.parse_args()
    digest = train(a.corpus, a.out, a.vocab)
    sp = spm.SentencePieceProcessor(model_file=a.out)
    print(f'{a.out}: {sp.get_piece_size()} pieces, sha256 {digest}')


if __name__ == '__main__':
    main()
