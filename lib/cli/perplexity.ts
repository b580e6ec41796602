// `bitllm perplexity MODEL -f TEXT`: mean negative log-likelihood and perplexity of a text.
// The text's tokens are cut into non-overlapping windows; each window runs from an empty context, opened by
// BOS when the model adds one, and every token after the window's first is scored against the logits of
// the token before it. --dump-logits writes float32 [n_tokens, n_vocab], row i = logits after fed token i
// (BOS included), windows one after another.
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';

import { UsageError } from './args.js';
import { type CommandSpec, CommandLine, MODEL_USAGE, MODEL_VALUED, loadOptions, openModel } from './run.js';

export const PERPLEXITY_USAGE = `usage: bitllm perplexity MODEL (-f TEXT_FILE | --tokens 1,2,3) [options]
      -f, --file F               UTF-8 text to score (tokenized without BOS)
      --tokens 1,2,3             token ids to score instead of a text
      --ctx N                    window length in tokens, BOS included (default 512)
      --no-bos                   do not open windows with BOS
      --dump-logits OUT          write float32 [n_tokens, n_vocab] logits, row i = after fed token i
      --json                     one line {"n_tokens","n_scored","n_windows","ctx","nll","ppl"}
${MODEL_USAGE.split('\n').filter((l) => !l.includes('--ctx')).join('\n')}
`;

const PERPLEXITY_SPEC: CommandSpec = {
  name: 'perplexity',
  valued: { ...MODEL_VALUED, f: 'file', file: 'file', tokens: 'tokens', 'dump-logits': 'dump-logits' },
  flags: { json: 'json', 'no-bos': 'no-bos', help: 'help', h: 'help' },
};

/** -log softmax(row)[target], in float64. */
function nll(row: Float32Array, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  return max + Math.log(sum) - row[target]!;
}

export async function runPerplexityCommand(argv: string[]): Promise<number> {
  const cl = new CommandLine(argv, PERPLEXITY_SPEC);
  if (cl.has('help')) {
    process.stdout.write(PERPLEXITY_USAGE);
    return 0;
  }
  const path = cl.model();
  const file = cl.str('file');
  const given = cl.ids('tokens');
  if ((file === undefined) === (given === undefined)) throw new UsageError('perplexity: give -f TEXT_FILE or --tokens 1,2,3 (one of them)');
  let text: string | undefined;
  if (file !== undefined) {
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`perplexity: cannot read -f '${file}': ${(err as Error).message}`);
    }
  }
  const ctx = cl.int('ctx', 2, 1 << 20) ?? 512;
  const json = cl.has('json');
  const dump = cl.str('dump-logits');
  const model = await openModel(path, loadOptions(cl, ctx), json);
  let fd: number | undefined;
  try {
    const bos = model.info.tokenizer.addBos && !cl.has('no-bos') ? model.info.tokenizer.bos : undefined;
    // Every window opens with BOS: ids that already start with it (a tokenizer's output) must not get a second.
    const tokens = given !== undefined && bos !== undefined && given[0] === bos ? given.slice(1) : (given ?? model.tokenize(text!, { addBos: false }));
    const perWindow = bos !== undefined ? ctx - 1 : ctx;
    const windows: number[][] = [];
    for (let i = 0; i < tokens.length; i += perWindow) {
      const w = tokens.slice(i, i + perWindow);
      if (bos !== undefined) w.unshift(bos);
      if (w.length >= 2) windows.push(w); // a lone token has nothing to score
    }
    if (windows.length === 0) throw new UsageError(`perplexity: the input has ${tokens.length} token(s); at least ${bos !== undefined ? 1 : 2} needed`);
    if (dump !== undefined) {
      try {
        fd = openSync(dump, 'w');
      } catch (err) {
        throw new UsageError(`perplexity: cannot write --dump-logits '${dump}': ${(err as Error).message}`);
      }
    }
    const V = model.info.hparams.nVocab;
    const tty = !json && process.stderr.isTTY;
    let total = 0;
    let scored = 0;
    let fed = 0;
    const t0 = Date.now();
    for (let w = 0; w < windows.length; w++) {
      const win = windows[w]!;
      for await (const chunk of model.evaluate(win)) {
        for (let r = 0; r < chunk.count; r++) {
          const i = chunk.start + r; // logits after win[i] predict win[i + 1]
          if (i + 1 < win.length) {
            total += nll(chunk.logits.subarray(r * V, (r + 1) * V), win[i + 1]!);
            scored++;
          }
        }
        if (fd !== undefined) writeSync(fd, new Uint8Array(chunk.logits.buffer, chunk.logits.byteOffset, chunk.logits.byteLength));
      }
      fed += win.length;
      if (tty) {
        const rate = fed / ((Date.now() - t0) / 1000);
        process.stderr.write(`\r\x1b[Kwindow ${w + 1}/${windows.length}  ppl ${Math.exp(total / scored).toFixed(4)}  (${rate.toFixed(0)} tok/s)`);
      }
    }
    if (tty) process.stderr.write('\n');
    const mean = total / scored;
    if (json) {
      process.stdout.write(JSON.stringify({ n_tokens: fed, n_scored: scored, n_windows: windows.length, ctx, nll: mean, ppl: Math.exp(mean) }) + '\n');
    } else {
      process.stdout.write(`perplexity ${Math.exp(mean).toFixed(4)}  (mean NLL ${mean.toFixed(6)} over ${scored} tokens in ${windows.length} window(s) of up to ${ctx})\n`);
    }
    return 0;
  } finally {
    if (fd !== undefined) closeSync(fd);
    await model.close();
  }
}
