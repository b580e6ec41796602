// Prometheus text exposition (format 0.0.4) for the server: counters, gauges and cumulative histograms,
// all with the `bitllm_` prefix and no colons. Everything lives on the main thread and is read without
// touching the engine, so a scrape never waits for a decode step.

type Labels = Record<string, string>;

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function num(v: number): string {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

interface Metric {
  render(): string;
}

export class Counter implements Metric {
  private readonly values = new Map<string, { labels: Labels; value: number }>();

  constructor(readonly name: string, readonly help: string, initial: Labels[] = [{}]) {
    for (const l of initial) this.inc(l, 0);
  }

  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    const e = this.values.get(key);
    if (e) e.value += by;
    else this.values.set(key, { labels, value: by });
  }

  get(labels: Labels = {}): number {
    return this.values.get(labelText(labels))?.value ?? 0;
  }

  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n`;
    for (const { labels, value } of this.values.values()) out += `${this.name}${labelText(labels)} ${num(value)}\n`;
    return out;
  }
}

export class Gauge implements Metric {
  constructor(readonly name: string, readonly help: string, private readonly read: () => number) {}

  render(): string {
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} gauge\n${this.name} ${num(this.read())}\n`;
  }
}

export class Histogram implements Metric {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(readonly name: string, readonly help: string, readonly buckets: readonly number[]) {
    this.counts = new Array<number>(buckets.length).fill(0);
  }

  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]!) this.counts[i]!++;
  }

  get observations(): number {
    return this.count;
  }

  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n`;
    this.buckets.forEach((b, i) => (out += `${this.name}_bucket{le="${num(b)}"} ${this.counts[i]}\n`));
    out += `${this.name}_bucket{le="+Inf"} ${this.count}\n${this.name}_sum ${num(this.sum)}\n${this.name}_count ${this.count}\n`;
    return out;
  }
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2.5, 5, 10, 20, 40, 80];
const TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384];

export const FINISH_REASONS = ['stop', 'length', 'abort', 'error'] as const;
export type SequenceOutcome = (typeof FINISH_REASONS)[number];

/** The server's metrics; names are documented in docs/server.md. */
export class ServerMetrics {
  readonly ttft = new Histogram('bitllm_time_to_first_token_seconds', 'Time from request arrival to the first generated token of a sequence.', LATENCY_BUCKETS);
  readonly itl = new Histogram('bitllm_inter_token_latency_seconds', 'Time between consecutive generated tokens of a sequence.', LATENCY_BUCKETS);
  readonly e2e = new Histogram('bitllm_e2e_request_latency_seconds', 'Time from request arrival to the end of a sequence.', LATENCY_BUCKETS);
  readonly queueTime = new Histogram('bitllm_request_queue_time_seconds', 'Time a sequence waited in the server queue before admission.', LATENCY_BUCKETS);
  readonly promptLength = new Histogram('bitllm_request_prompt_tokens', 'Prompt tokens per finished sequence.', TOKEN_BUCKETS);
  readonly generationLength = new Histogram('bitllm_request_generation_tokens', 'Generated tokens per finished sequence.', TOKEN_BUCKETS);
  readonly promptTokens = new Counter('bitllm_prompt_tokens_total', 'Prompt tokens of sequences that finished (stop or length); equals the sum of usage.prompt_tokens over choices.');
  readonly generationTokens = new Counter('bitllm_generation_tokens_total', 'Generated tokens of sequences that finished (stop or length); equals the sum of usage.completion_tokens.');
  readonly sequences = new Counter('bitllm_sequences_finished_total', 'Sequences (one per choice) by how they ended.', FINISH_REASONS.map((r) => ({ finish_reason: r })));
  readonly rejected = new Counter('bitllm_requests_rejected_total', 'Requests refused before admission, by reason.', [
    { reason: 'queue_full' }, { reason: 'draining' }, { reason: 'invalid' }, { reason: 'unauthorized' }, { reason: 'too_large' },
  ]);
  readonly http = new Counter('bitllm_http_requests_total', 'HTTP responses by route and status code.', []);
  private readonly all: Metric[];

  constructor(gauges: Array<[name: string, help: string, read: () => number]>) {
    this.all = [
      this.ttft, this.itl, this.e2e, this.queueTime, this.promptLength, this.generationLength, this.promptTokens, this.generationTokens,
      this.sequences, this.rejected, this.http, ...gauges.map(([n, h, r]) => new Gauge(n, h, r)),
    ];
  }

  render(): string {
    return this.all.map((m) => m.render()).join('');
  }
}
