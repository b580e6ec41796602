// The server's admission control: `parallel` slots admitted to the engine at once and a bounded FIFO of
// sequences waiting for one. A waiter whose signal aborts leaves the queue at once and is never admitted.

export class AbortedWhileQueued extends Error {
  override name = 'AbortedWhileQueued';
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
  signal: AbortSignal;
  onAbort: () => void;
}

export class Admission {
  private running = 0;
  private readonly waiting: Waiter[] = [];

  constructor(readonly parallel: number, readonly maxQueue: number) {}

  get runningCount(): number {
    return this.running;
  }

  get waitingCount(): number {
    return this.waiting.length;
  }

  /**
   * True when `sequences` more fit in the slots plus the queue. The server checks this and then acquires for
   * every sequence of the request in the same tick, so concurrent requests cannot overfill the queue.
   */
  hasRoom(sequences: number): boolean {
    return this.running + this.waiting.length + sequences <= this.parallel + this.maxQueue;
  }

  /** Resolves when a slot is free (FIFO); rejects with AbortedWhileQueued if `signal` aborts first. */
  acquire(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(new AbortedWhileQueued('aborted while queued'));
    if (this.running < this.parallel && this.waiting.length === 0) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        resolve, reject, signal,
        onAbort: () => {
          const i = this.waiting.indexOf(w);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(new AbortedWhileQueued('aborted while queued'));
        },
      };
      signal.addEventListener('abort', w.onAbort, { once: true });
      this.waiting.push(w);
    });
  }

  release(): void {
    this.running--;
    const next = this.waiting.shift();
    if (next) {
      next.signal.removeEventListener('abort', next.onAbort);
      this.running++;
      next.resolve();
    }
  }
}
