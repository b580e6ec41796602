// `bitllm tokenize MODEL TEXT`: token ids of a text. Reads only the tokenizer metadata, so vocab-only GGUF
// files work and no weights are loaded.
import { readFileSync } from 'node:fs';

import { readGguf } from '../format/gguf.js';
import { Tokenizer } from '../tokenizer/index.js';
import { UsageError } from './args.js';
import { type CommandSpec, CommandLine } from './run.js';

export const TOKENIZE_USAGE = `usage: bitllm tokenize MODEL (TEXT | --file F) [options]
      --file F                   tokenize the contents of F (UTF-8)
      --no-bos                   do not prepend BOS (default: the model's add_bos_token)
      --no-special               treat special-token texts such as <|eot_id|> as plain text
      --json                     print {"ids":[...]}
      --ids                      print the ids on one line
`;

const TOKENIZE_SPEC: CommandSpec = {
  name: 'tokenize',
  valued: { file: 'file', f: 'file' },
  flags: { 'no-bos': 'no-bos', 'no-special': 'no-special', json: 'json', ids: 'ids', help: 'help', h: 'help' },
};

export async function runTokenizeCommand(argv: string[]): Promise<number> {
  const cl = new CommandLine(argv, TOKENIZE_SPEC);
  if (cl.has('help')) {
    process.stdout.write(TOKENIZE_USAGE);
    return 0;
  }
  const path = cl.model(true);
  const texts = cl.positionals.slice(1);
  const file = cl.str('file');
  if (texts.length > 1) throw new UsageError(`tokenize: give the text as one argument (quote it), got ${texts.length}`);
  if ((file === undefined) === (texts.length === 0)) throw new UsageError('tokenize: give TEXT or --file F (one of them)');
  let text: string;
  if (file !== undefined) {
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`tokenize: cannot read --file '${file}': ${(err as Error).message}`);
    }
  } else text = texts[0]!;
  const tokenizer = Tokenizer.fromGguf(readGguf(path));
  const ids = tokenizer.encode(text, { ...(cl.has('no-bos') && { addBos: false }), parseSpecial: !cl.has('no-special') });
  if (cl.has('json')) process.stdout.write(JSON.stringify({ ids }) + '\n');
  else if (cl.has('ids')) process.stdout.write(ids.join(' ') + '\n');
  else {
    const width = String(tokenizer.vocabSize).length;
    for (const id of ids) process.stdout.write(`${String(id).padStart(width)}  ${JSON.stringify(tokenizer.tokenToPiece(id))}\n`);
    process.stdout.write(`${ids.length} tokens\n`);
  }
  return 0;
}
