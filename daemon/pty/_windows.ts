// Copyright 2026 the SandD authors. MIT license.
// Windows pseudo consoles (ConPTY) over kernel32.dll through Deno FFI.
// Written against the Win32 documentation and type-checked only: it has not run anywhere yet.

import type { PtyExit } from "./pty.ts";
import type { BackendSpawnOptions, PtyBackend } from "./_unix.ts";

const SYMBOLS = {
  CreatePipe: { parameters: ["buffer", "buffer", "pointer", "u32"], result: "i32" },
  CloseHandle: { parameters: ["pointer"], result: "i32" },
  CreatePseudoConsole: {
    parameters: ["u32", "pointer", "pointer", "u32", "buffer"],
    result: "i32",
  },
  ResizePseudoConsole: { parameters: ["pointer", "u32"], result: "i32" },
  // ClosePseudoConsole may wait for the output pipe to drain: keep it off the event loop.
  ClosePseudoConsole: { parameters: ["pointer"], result: "void", nonblocking: true },
  InitializeProcThreadAttributeList: {
    parameters: ["buffer", "u32", "u32", "buffer"],
    result: "i32",
  },
  UpdateProcThreadAttribute: {
    parameters: ["buffer", "u32", "usize", "pointer", "usize", "pointer", "pointer"],
    result: "i32",
  },
  DeleteProcThreadAttributeList: { parameters: ["buffer"], result: "void" },
  CreateProcessW: {
    parameters: [
      "pointer",
      "buffer",
      "pointer",
      "pointer",
      "i32",
      "u32",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  ReadFile: {
    parameters: ["pointer", "buffer", "u32", "buffer", "pointer"],
    result: "i32",
    nonblocking: true,
  },
  WriteFile: {
    parameters: ["pointer", "buffer", "u32", "buffer", "pointer"],
    result: "i32",
    nonblocking: true,
  },
  WaitForSingleObject: { parameters: ["pointer", "u32"], result: "u32", nonblocking: true },
  GetExitCodeProcess: { parameters: ["pointer", "buffer"], result: "i32" },
  TerminateProcess: { parameters: ["pointer", "u32"], result: "i32" },
  GetLastError: { parameters: [], result: "u32" },
} as const;

type Kernel32 = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

const PROC_THREAD_ATTRIBUTE_PSEUDOCONSOLE = 0x00020016n;
const EXTENDED_STARTUPINFO_PRESENT = 0x00080000;
const CREATE_UNICODE_ENVIRONMENT = 0x00000400;
const STARTF_USESTDHANDLES = 0x00000100;
const INFINITE = 0xffffffff;
/** sizeof(STARTUPINFOEXW) on 64-bit Windows: STARTUPINFOW (104) + lpAttributeList (8). */
const STARTUPINFOEX_SIZE = 112;
const READ_CHUNK = 64 * 1024;

let shared: { lib: Deno.DynamicLibrary<typeof SYMBOLS>; refs: number } | null = null;

function acquire(): Kernel32 {
  shared ??= { lib: Deno.dlopen("kernel32.dll", SYMBOLS), refs: 0 };
  shared.refs++;
  return shared.lib.symbols;
}

function release(): void {
  if (shared === null) return;
  if (--shared.refs === 0) {
    shared.lib.close();
    shared = null;
  }
}

function sysError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

function offHeap(size: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new ArrayBuffer(size));
}

/** NUL-terminated UTF-16LE. */
function wide(text: string): Uint8Array<ArrayBuffer> {
  const out = offHeap((text.length + 1) * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < text.length; i++) view.setUint16(i * 2, text.charCodeAt(i), true);
  return out;
}

function handleAt(buffer: Uint8Array<ArrayBuffer>, offset = 0): Deno.PointerValue {
  const value = new DataView(buffer.buffer).getBigUint64(offset, true);
  return Deno.UnsafePointer.create(value);
}

function coord(cols: number, rows: number): number {
  return ((rows & 0xffff) << 16 | (cols & 0xffff)) >>> 0;
}

/** Quotes one argument the way CommandLineToArgvW and the MSVC runtime split it back. */
function quoteArgument(arg: string): string {
  if (arg !== "" && !/[\s"]/.test(arg)) return arg;
  let out = '"';
  let backslashes = 0;
  for (const ch of arg) {
    if (ch === "\\") {
      backslashes++;
    } else if (ch === '"') {
      out += "\\".repeat(backslashes * 2 + 1) + '"';
      backslashes = 0;
    } else {
      out += "\\".repeat(backslashes) + ch;
      backslashes = 0;
    }
  }
  return out + "\\".repeat(backslashes * 2) + '"';
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Finds the program through PATH and PATHEXT, as cmd.exe would. */
function resolveCommand(command: string, env: Record<string, string>, cwd: string): string {
  const lookup = (name: string): string | undefined => {
    const key = Object.keys(env).find((k) => k.toUpperCase() === name);
    return key === undefined ? undefined : env[key];
  };
  const extensions = (lookup("PATHEXT") ?? ".COM;.EXE;.BAT;.CMD").split(";").filter((e) => e);
  const hasExtension = /\.[^\\/.]+$/.test(command);
  const candidates = (base: string) =>
    hasExtension ? [base, ...extensions.map((e) => base + e)] : extensions.map((e) => base + e);
  const absolute = /^[a-zA-Z]:[\\/]/.test(command) || command.startsWith("\\\\");
  if (absolute || /[\\/]/.test(command)) {
    const base = absolute ? command : `${cwd}\\${command}`;
    const found = candidates(base).find(isFile);
    if (found !== undefined) return found;
    throw sysError("ENOENT", `Program not found: "${command}"`);
  }
  for (const dir of [cwd, ...(lookup("PATH") ?? "").split(";")]) {
    if (dir === "") continue;
    const found = candidates(`${dir.replace(/[\\/]$/, "")}\\${command}`).find(isFile);
    if (found !== undefined) return found;
  }
  throw sysError("ENOENT", `Program not found in PATH: "${command}"`);
}

/** A ConPTY pseudo console and the process attached to it. */
export class WindowsPty implements PtyBackend {
  readonly pid: number;
  readonly exited: Promise<PtyExit>;
  #k: Kernel32;
  #console: Deno.PointerValue;
  #process: Deno.PointerValue;
  #input: Deno.PointerValue;
  #output: Deno.PointerValue;
  #attributes: Uint8Array<ArrayBuffer>;
  #readBuffer = offHeap(READ_CHUNK);
  #readCount = offHeap(4);
  #writeCount = offHeap(4);
  #done = false;
  #eof = false;
  #consoleClosed: Promise<void> | null = null;
  #reading: Promise<unknown> | null = null;
  #writeChain: Promise<unknown> = Promise.resolve();
  #closed: Promise<void> | null = null;

  private constructor(
    k: Kernel32,
    parts: {
      console: Deno.PointerValue;
      process: Deno.PointerValue;
      pid: number;
      input: Deno.PointerValue;
      output: Deno.PointerValue;
      attributes: Uint8Array<ArrayBuffer>;
    },
  ) {
    this.#k = k;
    this.#console = parts.console;
    this.#process = parts.process;
    this.pid = parts.pid;
    this.#input = parts.input;
    this.#output = parts.output;
    this.#attributes = parts.attributes;
    this.exited = this.#wait();
  }

  /** Creates a pseudo console of the requested size and starts the program on it. */
  static spawn(options: BackendSpawnOptions): WindowsPty {
    const path = resolveCommand(options.command, options.env, options.cwd);
    const k = acquire();
    const toClose: Deno.PointerValue[] = [];
    let console: Deno.PointerValue = null;
    let attributes: Uint8Array<ArrayBuffer> | null = null;
    try {
      const inRead = offHeap(8), inWrite = offHeap(8), outRead = offHeap(8), outWrite = offHeap(8);
      if (!k.CreatePipe(inRead, inWrite, null, 0)) throw lastError(k, "CreatePipe");
      toClose.push(handleAt(inRead), handleAt(inWrite));
      if (!k.CreatePipe(outRead, outWrite, null, 0)) throw lastError(k, "CreatePipe");
      toClose.push(handleAt(outRead), handleAt(outWrite));
      const consoleOut = offHeap(8);
      const hr = k.CreatePseudoConsole(
        coord(options.cols, options.rows),
        handleAt(inRead),
        handleAt(outWrite),
        0,
        consoleOut,
      );
      if (hr !== 0) throw sysError("ECONPTY", `CreatePseudoConsole failed: HRESULT ${hr}`);
      console = handleAt(consoleOut);
      // The pseudo console holds its own copies of its ends of the pipes.
      k.CloseHandle(handleAt(inRead));
      k.CloseHandle(handleAt(outWrite));
      toClose.splice(0, toClose.length, handleAt(inWrite), handleAt(outRead));

      const sizeBuffer = offHeap(8);
      k.InitializeProcThreadAttributeList(null, 1, 0, sizeBuffer);
      const size = Number(new DataView(sizeBuffer.buffer).getBigUint64(0, true));
      attributes = offHeap(size);
      if (!k.InitializeProcThreadAttributeList(attributes, 1, 0, sizeBuffer)) {
        throw lastError(k, "InitializeProcThreadAttributeList");
      }
      if (
        !k.UpdateProcThreadAttribute(
          attributes,
          0,
          PROC_THREAD_ATTRIBUTE_PSEUDOCONSOLE,
          console,
          8n,
          null,
          null,
        )
      ) throw lastError(k, "UpdateProcThreadAttribute");

      const startup = offHeap(STARTUPINFOEX_SIZE);
      const view = new DataView(startup.buffer);
      view.setUint32(0, STARTUPINFOEX_SIZE, true); // cb
      view.setUint32(60, STARTF_USESTDHANDLES, true); // dwFlags: no inherited std handles
      view.setBigUint64(
        104,
        BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(attributes))),
        true,
      );
      const commandLine = wide([path, ...options.args].map(quoteArgument).join(" "));
      const environment = wide(
        Object.entries(options.env)
          .sort(([a], [b]) => (a.toUpperCase() < b.toUpperCase() ? -1 : 1))
          .map(([key, value]) => `${key}=${value}\0`).join("") + "\0",
      );
      const info = offHeap(24);
      if (
        !k.CreateProcessW(
          null,
          commandLine,
          null,
          null,
          0,
          EXTENDED_STARTUPINFO_PRESENT | CREATE_UNICODE_ENVIRONMENT,
          environment,
          wide(options.cwd),
          startup,
          info,
        )
      ) throw lastError(k, "CreateProcessW");
      k.CloseHandle(handleAt(info, 8)); // primary thread
      const pid = new DataView(info.buffer).getUint32(16, true);
      return new WindowsPty(k, {
        console,
        process: handleAt(info, 0),
        pid,
        input: handleAt(inWrite),
        output: handleAt(outRead),
        attributes,
      });
    } catch (error) {
      for (const handle of toClose) k.CloseHandle(handle);
      if (attributes !== null) k.DeleteProcThreadAttributeList(attributes);
      const cleanup = console === null ? Promise.resolve() : k.ClosePseudoConsole(console);
      cleanup.finally(release);
      throw error;
    }
  }

  async #wait(): Promise<PtyExit> {
    await this.#k.WaitForSingleObject(this.#process, INFINITE);
    const code = new Uint32Array(new ArrayBuffer(4));
    this.#k.GetExitCodeProcess(this.#process, new Uint8Array(code.buffer));
    this.#done = true;
    // The output pipe only ends when the pseudo console goes away.
    this.#closeConsole();
    return { exitCode: code[0] ?? 0, signal: null };
  }

  #closeConsole(): Promise<void> {
    this.#consoleClosed ??= this.#k.ClosePseudoConsole(this.#console);
    return this.#consoleClosed;
  }

  read(): Promise<Uint8Array | null> {
    if (this.#reading !== null) {
      return Promise.reject(sysError("EBUSY", "Only one read() may be in flight at a time"));
    }
    const reading = this.#readOnce().finally(() => {
      this.#reading = null;
    });
    this.#reading = reading;
    return reading;
  }

  async #readOnce(): Promise<Uint8Array | null> {
    while (!this.#eof && this.#closed === null) {
      const ok = await this.#k.ReadFile(
        this.#output,
        this.#readBuffer,
        READ_CHUNK,
        this.#readCount,
        null,
      );
      const n = new DataView(this.#readCount.buffer).getUint32(0, true);
      if (!ok) break; // ERROR_BROKEN_PIPE once the pseudo console is closed
      if (n > 0) return this.#readBuffer.slice(0, n);
    }
    this.#eof = true;
    return null;
  }

  write(data: Uint8Array): Promise<void> {
    if (this.#closed !== null) return Promise.reject(sysError("ECLOSED", "The pty is closed"));
    const bytes = offHeap(data.byteLength);
    bytes.set(data);
    const result = this.#writeChain.then(async () => {
      let offset = 0;
      while (offset < bytes.length) {
        const rest = bytes.subarray(offset);
        const ok = await this.#k.WriteFile(this.#input, rest, rest.length, this.#writeCount, null);
        if (!ok) throw sysError("EIO", "Writing to the pseudo console failed");
        offset += new DataView(this.#writeCount.buffer).getUint32(0, true);
      }
    });
    this.#writeChain = result.catch(() => {});
    return result;
  }

  resize(cols: number, rows: number): void {
    if (this.#closed !== null || this.#consoleClosed !== null) {
      throw sysError("ECLOSED", "The pty is closed");
    }
    const hr = this.#k.ResizePseudoConsole(this.#console, coord(cols, rows));
    if (hr !== 0) throw sysError("ECONPTY", `ResizePseudoConsole failed: HRESULT ${hr}`);
  }

  kill(_signal: Deno.Signal): void {
    if (!this.#done) this.#k.TerminateProcess(this.#process, 1);
  }

  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.kill("SIGKILL");
    await this.exited;
    await this.#closeConsole();
    await Promise.allSettled([this.#reading, this.#writeChain]);
    this.#k.CloseHandle(this.#input);
    this.#k.CloseHandle(this.#output);
    this.#k.CloseHandle(this.#process);
    this.#k.DeleteProcThreadAttributeList(this.#attributes);
    release();
  }
}

function lastError(k: Kernel32, what: string): Error {
  const code = k.GetLastError();
  const name = code === 2 || code === 3 ? "ENOENT" : code === 5 ? "EACCES" : `WIN${code}`;
  return sysError(name, `${what} failed: Windows error ${code}`);
}
