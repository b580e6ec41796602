// `bitllm chat MODEL`: an interactive conversation. readline gives line editing and history; Ctrl-C stops
// the reply being written (and at the prompt, leaves); /reset starts over, /exit leaves.
import { createInterface } from 'node:readline';

import { ContextOverflowError } from '../model/kv-cache.js';
import { CHAT_FORMATS, type ChatFormatName } from '../engine/chat.js';
import { type CommandSpec, CommandLine, MODEL_USAGE, MODEL_VALUED, SAMPLING_USAGE, SAMPLING_VALUED, loadOptions, openModel, samplingOptions } from './run.js';

export const CHAT_USAGE = `usage: bitllm chat [MODEL] [options]   (default MODEL: the built-in tiny b1.58 model)
      --system TEXT              system prompt
      --format ${CHAT_FORMATS.join('|')}   chat format (default: detected from the model's template / vocabulary)
${SAMPLING_USAGE}
${MODEL_USAGE}
  in the chat: /reset clears the conversation, /exit (or Ctrl-D) leaves, Ctrl-C stops a reply
`;

const CHAT_SPEC: CommandSpec = {
  name: 'chat',
  valued: { system: 'system', format: 'format', ...SAMPLING_VALUED, ...MODEL_VALUED },
  flags: { help: 'help', h: 'help' },
};

export async function runChatCommand(argv: string[]): Promise<number> {
  const cl = new CommandLine(argv, CHAT_SPEC);
  if (cl.has('help')) {
    process.stdout.write(CHAT_USAGE);
    return 0;
  }
  const path = cl.model(false, true);
  const format = cl.choice<ChatFormatName>('format', CHAT_FORMATS);
  const system = cl.str('system');
  const sampling = samplingOptions(cl, 512);
  const interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  const model = await openModel(path, loadOptions(cl), false);
  const chat = model.createChat({ ...(system !== undefined && { system }), ...(format && { format }) });
  if (interactive) process.stderr.write(`chat format: ${chat.template.name}. /reset clears, /exit leaves, Ctrl-C stops a reply.\n`);

  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: interactive, historySize: 1000 });
  rl.setPrompt('> ');
  let reply: AbortController | undefined;
  rl.on('SIGINT', () => {
    if (reply) reply.abort();
    else rl.close();
  });
  const prompt = () => {
    if (interactive) rl.prompt();
  };
  try {
    prompt();
    for await (const line of rl) {
      const message = line.trim();
      if (message === '') {
        prompt();
        continue;
      }
      if (message === '/exit' || message === '/quit') break;
      if (message === '/reset') {
        chat.reset();
        process.stderr.write('(conversation cleared)\n');
        prompt();
        continue;
      }
      if (message.startsWith('/')) {
        process.stderr.write('commands: /reset, /exit\n');
        prompt();
        continue;
      }
      reply = new AbortController();
      try {
        let text = '';
        for await (const chunk of chat.stream(message, { ...sampling, signal: reply.signal })) {
          text += chunk.text;
          process.stdout.write(chunk.text);
        }
        if (!text.endsWith('\n')) process.stdout.write('\n');
        if (reply.signal.aborted) process.stderr.write('[stopped]\n');
      } catch (err) {
        if (!(err instanceof ContextOverflowError)) throw err;
        process.stderr.write(`\n${err.message}\n(the context is full: /reset to start a new conversation)\n`);
      } finally {
        reply = undefined;
      }
      prompt();
    }
  } finally {
    rl.close();
    await model.close();
  }
  return 0;
}
