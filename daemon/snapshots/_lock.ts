/**
 * A readers-writer lock for the snapshot store: snapshots being taken, restored, exported or imported share it;
 * a deletion (which frees blobs) takes it alone, so it never frees a blob a snapshot in progress has just found
 * in the store and counted on. Waiters are served in arrival order, so a deletion is not starved.
 *
 * @module
 */

interface Waiter {
  exclusive: boolean;
  go: () => void;
}

/** Shared and exclusive holds, first come first served. */
export class RwLock {
  #readers = 0;
  #writer = false;
  #waiting: Waiter[] = [];

  /** Run `fn` while holding the lock shared. */
  async shared<T>(fn: () => Promise<T>): Promise<T> {
    await this.#acquire(false);
    try {
      return await fn();
    } finally {
      this.#release(false);
    }
  }

  /** Take the lock shared until the returned function is called (for a stream that outlives its request). */
  async holdShared(): Promise<() => void> {
    await this.#acquire(false);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#release(false);
    };
  }

  /** Run `fn` while holding the lock alone. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.#acquire(true);
    try {
      return await fn();
    } finally {
      this.#release(true);
    }
  }

  #free(exclusive: boolean): boolean {
    return exclusive ? !this.#writer && this.#readers === 0 : !this.#writer;
  }

  #take(exclusive: boolean): void {
    if (exclusive) this.#writer = true;
    else this.#readers++;
  }

  #acquire(exclusive: boolean): Promise<void> {
    if (this.#waiting.length === 0 && this.#free(exclusive)) {
      this.#take(exclusive);
      return Promise.resolve();
    }
    return new Promise((go) => this.#waiting.push({ exclusive, go }));
  }

  #release(exclusive: boolean): void {
    if (exclusive) this.#writer = false;
    else this.#readers--;
    while (this.#waiting.length > 0) {
      const next = this.#waiting[0]!;
      if (!this.#free(next.exclusive)) break;
      this.#waiting.shift();
      this.#take(next.exclusive);
      next.go();
    }
  }
}
