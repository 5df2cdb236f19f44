// The SandD console: fleet view, processes and their output, terminals in the browser (shared, read-only
// watching, reattach after reload), replays of asciicast recordings. Plain browser JavaScript; every asset is
// served by the controller under /console.
// Loaded by URL at run time (the files exist only as the controller serves them, not beside this one).
const VENDOR = "/console/vendor/";
const { Terminal } = await import(VENDOR + "xterm.mjs");
const { FitAddon } = await import(VENDOR + "addon-fit.mjs");

const $ = (selector) => document.querySelector(selector);
const encoder = new TextEncoder();
const API = "/console/api/v1";
/** Bytes of terminal output the browser lets the controller send beyond what xterm has drawn. */
const FLOW_WINDOW = 256 * 1024;
/** Largest piece handed to xterm at once. */
const WRITE_PIECE = 8 * 1024;

const state = {
  daemons: new Map(),
  running: new Map(),
  selected: null,
  canExec: true,
  canFiles: false,
  recordings: false,
  term: null,
  output: null,
};

// ---------------------------------------------------------------------------------------------- helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

function status(text) {
  $("#status").textContent = text;
}

function since(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function command(cmd) {
  return Array.isArray(cmd) ? cmd.join(" ") : String(cmd);
}

async function api(path, init = {}) {
  const response = await fetch(API + path, {
    ...init,
    headers: { "x-sandd-console": "1", ...(init.headers ?? {}) },
  });
  if (response.status === 401) {
    showLogin();
    throw new Error("Signed out");
  }
  if (!response.ok) {
    let message = `${response.status}`;
    try {
      const body = await response.json();
      message = `${body.code}: ${body.message}`;
    } catch {
      // not JSON
    }
    throw new Error(message);
  }
  return response;
}

function show(view) {
  for (const id of ["#login", "#fleet-view", "#terminal-view", "#replays-view"]) {
    $(id).hidden = id !== view;
  }
  $("#nav-fleet").classList.toggle("active", view === "#fleet-view" || view === "#terminal-view");
  $("#nav-replays").classList.toggle("active", view === "#replays-view");
}

// ------------------------------------------------------------------------------------------ sign in

function showLogin(message = "") {
  show("#login");
  $("#login-error").textContent = message;
  $("#logout").hidden = true;
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await fetch("/console/session", {
    method: "POST",
    headers: { "content-type": "application/json", "x-sandd-console": "1" },
    body: JSON.stringify({ token: $("#login-token").value }),
  });
  $("#login-token").value = "";
  if (!response.ok) {
    showLogin(response.status === 429 ? "Too many attempts; wait a minute." : "Token refused.");
    return;
  }
  await start();
});

$("#logout").addEventListener("click", async () => {
  await fetch("/console/session", { method: "DELETE", headers: { "x-sandd-console": "1" } });
  location.hash = "";
  location.reload();
});

// -------------------------------------------------------------------------------------------- fleet

function matches(info, filter) {
  for (const word of filter.split(/\s+/).filter(Boolean)) {
    const eq = word.indexOf("=");
    if (eq > 0) {
      if (info.labels[word.slice(0, eq)] !== word.slice(eq + 1)) return false;
    } else if (!info.id.includes(word) && !info.hostname.includes(word)) {
      return false;
    }
  }
  return true;
}

function renderFleet() {
  const filter = $("#filter").value.trim();
  const body = $("#daemons tbody");
  const rows = [];
  const list = [...state.daemons.values()].sort((a, b) => a.id.localeCompare(b.id));
  for (const info of list) {
    if (!matches(info, filter)) continue;
    const labels = Object.entries(info.labels).map(([k, v]) =>
      el("span", { class: "label" }, `${k}=${v}`)
    );
    const running = state.running.get(info.id);
    rows.push(
      el(
        "tr",
        {
          class: info.id === state.selected ? "selected" : "",
          "data-daemon": info.id,
          onclick: () => select(info.id),
        },
        el("td", { class: "mono" }, info.id),
        el("td", {}, ...labels),
        el(
          "td",
          {},
          info.hostname,
          el("div", { class: "muted" }, `${info.platform}/${info.arch} · v${info.version}`),
        ),
        el("td", { title: info.connectedAt }, since(info.connectedAt)),
        el("td", { class: "running" }, running === undefined ? "…" : String(running)),
      ),
    );
  }
  body.replaceChildren(...rows);
  $("#count").textContent = `${rows.length} of ${state.daemons.size}`;
}

async function countRunning(id) {
  try {
    const { processes } = await (await api(`/daemons/${encodeURIComponent(id)}/processes`)).json();
    state.running.set(id, processes.filter((p) => p.state === "running").length);
    renderFleet();
    if (state.selected === id) renderProcesses(processes);
  } catch {
    // the daemon left meanwhile
  }
}

async function loadFleet() {
  const { daemons } = await (await api("/daemons")).json();
  state.daemons = new Map(daemons.map((d) => [d.id, d]));
  renderFleet();
  for (const d of daemons.slice(0, 200)) countRunning(d.id);
}

let events = null;
function follow() {
  events?.close();
  events = new EventSource(`${API}/events`);
  events.addEventListener("open", () => status("live"));
  events.addEventListener("error", () => status("reconnecting…"));
  events.addEventListener("connect", (event) => {
    const info = JSON.parse(event.data);
    state.daemons.set(info.id, info);
    renderFleet();
    countRunning(info.id);
  });
  events.addEventListener("disconnect", (event) => {
    const info = JSON.parse(event.data);
    state.daemons.delete(info.id);
    state.running.delete(info.id);
    renderFleet();
    if (state.selected === info.id) $("#detail-title").textContent = `${info.id} (disconnected)`;
  });
  events.addEventListener("exit", (event) => {
    const { daemon } = JSON.parse(event.data);
    countRunning(daemon);
  });
}

$("#filter").addEventListener("input", renderFleet);
setInterval(renderFleet, 10_000);

// ------------------------------------------------------------------------------------ one daemon

function select(id) {
  state.selected = id;
  $("#detail-empty").hidden = true;
  $("#detail-body").hidden = false;
  $("#detail-title").textContent = id;
  $("#output-pane").hidden = true;
  stopOutput();
  renderFleet();
  countRunning(id);
  listFiles();
}

function renderProcesses(processes) {
  const rows = processes
    .sort((a, b) => Date.parse(b.startedAt) - Date.parse(a.startedAt))
    .map((p) => {
      const actions = el("td");
      if (p.pty && p.state === "running") {
        actions.append(
          el("button", {
            type: "button",
            onclick: () => openTerminal({ daemon: state.selected, attach: p.id }),
          }, "attach"),
          " ",
          el("button", {
            type: "button",
            onclick: () => openTerminal({ daemon: state.selected, attach: p.id, readOnly: true }),
          }, "watch"),
        );
      } else if (!p.pty) {
        actions.append(el("button", { type: "button", onclick: () => showOutput(p) }, "output"));
      }
      if (p.state === "running" && state.canExec) {
        const signal = el(
          "select",
          {},
          ...["SIGTERM", "SIGINT", "SIGHUP", "SIGKILL"].map((s) => el("option", {}, s)),
        );
        actions.append(
          " ",
          signal,
          el("button", { type: "button", onclick: () => sendSignal(p.id, signal.value) }, "signal"),
        );
      }
      return el(
        "tr",
        { "data-process": p.id },
        el("td", { class: "mono" }, p.id, p.pty ? el("span", { class: "label" }, "tty") : null),
        el("td", {}, p.state + (p.lingering ? ` (+${p.lingering})` : "")),
        el(
          "td",
          {},
          p.exitCode === null ? "" : String(p.exitCode) + (p.signal ? ` ${p.signal}` : ""),
        ),
        el("td", { class: "mono" }, command(p.command)),
        el("td", { title: p.startedAt }, `${since(p.startedAt)} ago`),
        actions,
      );
    });
  $("#processes tbody").replaceChildren(...rows);
}

async function sendSignal(proc, signal) {
  try {
    await api(
      `/daemons/${encodeURIComponent(state.selected)}/processes/${encodeURIComponent(proc)}/signal`,
      {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ signal }),
      },
    );
    status(`${signal} sent to ${proc}`);
  } catch (error) {
    status(String(error.message));
  }
}

$("#refresh").addEventListener("click", () => state.selected && countRunning(state.selected));
$("#new-terminal").addEventListener(
  "click",
  () => openTerminal({ daemon: state.selected, record: $("#record").checked }),
);

// ------------------------------------------------------------------------- process output (tail/follow)

function stopOutput() {
  state.output?.abort();
  state.output = null;
}

function showOutput(p) {
  $("#output-pane").hidden = false;
  $("#output-title").textContent = p.id;
  $("#output-title").dataset.proc = p.id;
  $("#output-from").value = "0";
  $("#output").textContent = "";
  loadOutput();
}

async function loadOutput() {
  stopOutput();
  const proc = $("#output-title").dataset.proc;
  const stream = $("#output-stream").value;
  const follow = $("#output-follow").checked;
  const from = Math.max(0, Number($("#output-from").value) || 0);
  const controller = new AbortController();
  state.output = controller;
  const pre = $("#output");
  pre.textContent = "";
  try {
    const response = await api(
      `/daemons/${encodeURIComponent(state.selected)}/processes/${
        encodeURIComponent(proc)
      }/output?stream=${stream}&from=${from}&follow=${follow}`,
      { signal: controller.signal },
    );
    let offset = Number(response.headers.get("sandd-offset") ?? from);
    if (offset > from) pre.append(`[${offset - from} bytes no longer retained]\n`);
    const decoder = new TextDecoder();
    const reader = response.body.getReader();
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      offset += value.length;
      pre.append(decoder.decode(value, { stream: true }));
      // Keep the page light: the newest 256 KiB are shown, the offset says where to resume.
      if (pre.textContent.length > 512 * 1024) pre.textContent = pre.textContent.slice(-256 * 1024);
      pre.scrollTop = pre.scrollHeight;
      $("#output-offset").textContent = `offset ${offset}`;
      $("#output-from").value = String(offset);
    }
    $("#output-offset").textContent = `offset ${offset} (end)`;
  } catch (error) {
    if (error.name !== "AbortError") $("#output-offset").textContent = String(error.message);
  }
}

$("#output-go").addEventListener("click", loadOutput);
$("#output-stop").addEventListener("click", stopOutput);

// ------------------------------------------------------------------------------------------ files

function joinPath(dir, name) {
  if (dir === "." || dir === "") return name;
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

function parentPath(dir) {
  if (dir === "/" || dir === "." || dir === "") return dir || ".";
  const trimmed = dir.replace(/\/+$/, "");
  const at = trimmed.lastIndexOf("/");
  if (at < 0) return ".";
  return at === 0 ? "/" : trimmed.slice(0, at);
}

async function listFiles() {
  const id = state.selected;
  const dir = $("#files-path").value.trim() || ".";
  $("#files-state").textContent = "…";
  try {
    const { entries } = await (await api(
      `/daemons/${encodeURIComponent(id)}/fs/list?path=${encodeURIComponent(dir)}`,
    )).json();
    entries.sort((a, b) =>
      (a.type === "directory" ? 0 : 1) - (b.type === "directory" ? 0 : 1) ||
      a.path.localeCompare(b.path)
    );
    $("#files tbody").replaceChildren(...entries.map((entry) => {
      const path = joinPath(dir, entry.path);
      const name = entry.type === "directory"
        ? el("a", {
          href: "#",
          onclick: (event) => {
            event.preventDefault();
            $("#files-path").value = path;
            listFiles();
          },
        }, `${entry.path}/`)
        : entry.type === "file"
        ? el("a", {
          href: `${API}/daemons/${encodeURIComponent(id)}/files?path=${encodeURIComponent(path)}`,
          download: entry.path,
        }, entry.path)
        : entry.path + (entry.target ? ` → ${entry.target}` : "");
      return el(
        "tr",
        { "data-file": entry.path },
        el("td", { class: "mono" }, name),
        el("td", {}, entry.type),
        el("td", {}, entry.type === "file" ? String(entry.size) : ""),
        el("td", {}, entry.mtime ? `${since(entry.mtime)} ago` : ""),
      );
    }));
    $("#files-state").textContent = `${entries.length} entries`;
  } catch (error) {
    $("#files-state").textContent = String(error.message);
  }
}

$("#files-go").addEventListener("click", listFiles);
$("#files-path").addEventListener("keydown", (event) => event.key === "Enter" && listFiles());
$("#files-up").addEventListener("click", () => {
  $("#files-path").value = parentPath($("#files-path").value.trim());
  listFiles();
});
$("#files-upload").addEventListener("change", async () => {
  const file = $("#files-upload").files[0];
  if (!file) return;
  const path = joinPath($("#files-path").value.trim() || ".", file.name);
  $("#files-state").textContent = `uploading ${file.name}…`;
  try {
    const response = await api(
      `/daemons/${encodeURIComponent(state.selected)}/files?path=${encodeURIComponent(path)}`,
      { method: "PUT", body: file },
    );
    const { bytes } = await response.json();
    $("#files-state").textContent = `uploaded ${bytes} bytes to ${path}`;
    $("#files-upload").value = "";
    await listFiles();
  } catch (error) {
    $("#files-state").textContent = String(error.message);
  }
});

// ---------------------------------------------------------------------------------------- terminals

function terminalUrl({ daemon, attach, readOnly, record, from }, size) {
  const query = new URLSearchParams({ flow: String(FLOW_WINDOW) });
  if (attach) {
    query.set("attach", attach);
    if (from !== undefined && from !== null) query.set("from", String(from));
  }
  if (readOnly) query.set("readOnly", "true");
  else {
    query.set("cols", String(size.cols));
    query.set("rows", String(size.rows));
  }
  if (record && !attach) query.set("record", "true");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/console/terminal/${encodeURIComponent(daemon)}?${query}`;
}

function closeTerminal() {
  const t = state.term;
  state.term = null;
  if (!t) return;
  t.closing = true;
  t.socket?.close();
  t.term.dispose();
  globalThis.removeEventListener("resize", t.onWindowResize);
}

function openTerminal(options) {
  closeTerminal();
  if (state.selected !== options.daemon) select(options.daemon);
  show("#terminal-view");
  const term = new Terminal({
    cursorBlink: !options.readOnly,
    disableStdin: !!options.readOnly,
    scrollback: 5000,
    fontFamily: "ui-monospace, Menlo, Consolas, monospace",
    fontSize: 14,
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  const host = $("#terminal");
  host.replaceChildren();
  term.open(host);
  fit.fit();
  const t = {
    options,
    term,
    fit,
    socket: null,
    id: null,
    received: 0,
    drawn: 0,
    acked: 0,
    offset: 0,
    opened: performance.now(),
    closing: false,
    onWindowResize: () => fit.fit(),
  };
  state.term = t;
  globalThis.sandd.term = t;
  $("#term-title").textContent = `${options.daemon}${options.readOnly ? " (read-only)" : ""}`;
  $("#term-state").textContent = "connecting…";
  $("#term-detach").hidden = !!options.readOnly;
  $("#term-kill").hidden = !!options.readOnly;
  const socket = new WebSocket(terminalUrl(options, { cols: term.cols, rows: term.rows }));
  socket.binaryType = "arraybuffer";
  t.socket = socket;
  socket.addEventListener("message", (event) => {
    if (typeof event.data !== "string") {
      const bytes = new Uint8Array(event.data);
      t.received += bytes.length;
      t.offset += bytes.length;
      // Big messages go to xterm in pieces: it yields to the page between pieces, never inside one.
      for (let at = 0; at + WRITE_PIECE < bytes.length; at += WRITE_PIECE) {
        term.write(bytes.subarray(at, at + WRITE_PIECE));
      }
      term.write(bytes.subarray(Math.floor((bytes.length - 1) / WRITE_PIECE) * WRITE_PIECE), () => {
        // Credit back once xterm has drawn the bytes: a busy page slows the program, it never drowns.
        t.drawn += bytes.length;
        if (t.drawn - t.acked >= FLOW_WINDOW / 4 || t.drawn === t.received) {
          t.acked = t.drawn;
          if (socket.readyState === WebSocket.OPEN) {
            socket.send(JSON.stringify({ type: "ack", bytes: t.drawn }));
          }
        }
      });
      return;
    }
    const message = JSON.parse(event.data);
    if (message.type === "open") {
      t.id = message.id;
      t.offset = message.offset ?? 0;
      t.readyMs = performance.now() - t.opened;
      $("#term-state").textContent = `${message.id} · pid ${message.pid}`;
      const tag = options.readOnly ? "w" : "t";
      history.replaceState(
        null,
        "",
        `#${tag}=${encodeURIComponent(options.daemon)}/${encodeURIComponent(message.id)}`,
      );
      if (options.readOnly && message.cols && message.rows) term.resize(message.cols, message.rows);
      if (!options.readOnly) term.focus();
      document.body.dataset.terminal = "open";
    } else if (message.type === "gap") {
      t.offset = message.to;
      if (t.received > 0) {
        // Fell behind the controller's scrollback: start over from what it still holds.
        term.reset();
        $("#term-state").textContent = `resynced: ${message.to - message.from} bytes skipped`;
      }
    } else if (message.type === "resize") {
      if (options.readOnly) term.resize(message.cols, message.rows);
    } else if (message.type === "viewers") {
      $("#term-viewers").textContent = `${message.count} viewer${message.count === 1 ? "" : "s"}`;
    } else if (message.type === "exit") {
      $("#term-state").textContent = `exited ${message.exitCode}${
        message.signal ? ` (${message.signal})` : ""
      }`;
      term.write(`\r\n[exited ${message.exitCode}]\r\n`);
      history.replaceState(null, "", "#");
    } else if (message.type === "error") {
      $("#term-state").textContent = `${message.code}: ${message.message}`;
    }
  });
  socket.addEventListener("close", () => {
    if (!t.closing && state.term === t) {
      $("#term-state").textContent += " · disconnected";
      document.body.dataset.terminal = "closed";
    }
  });
  term.onData((data) => {
    if (options.readOnly || socket.readyState !== WebSocket.OPEN) return;
    socket.send(encoder.encode(data));
  });
  term.onResize(({ cols, rows }) => {
    if (options.readOnly || socket.readyState !== WebSocket.OPEN) return;
    socket.send(JSON.stringify({ type: "resize", cols, rows }));
  });
  globalThis.addEventListener("resize", t.onWindowResize);
}

$("#term-detach").addEventListener("click", () => {
  state.term?.socket?.send(JSON.stringify({ type: "detach" }));
  history.replaceState(null, "", "#");
  closeTerminal();
  show("#fleet-view");
});
$("#term-kill").addEventListener("click", () => {
  state.term?.socket?.send(JSON.stringify({ type: "kill", signal: "SIGHUP" }));
});
$("#term-back").addEventListener("click", () => {
  history.replaceState(null, "", "#");
  closeTerminal();
  show("#fleet-view");
  if (state.selected) countRunning(state.selected);
});
$("#term-share").addEventListener("click", async () => {
  const t = state.term;
  if (!t?.id) return;
  const link = `${location.origin}/console/#w=${encodeURIComponent(t.options.daemon)}/${
    encodeURIComponent(t.id)
  }`;
  try {
    await navigator.clipboard.writeText(link);
    $("#term-state").textContent = "read-only link copied";
  } catch {
    prompt("Read-only link", link);
  }
});

// ------------------------------------------------------------------------------------------ replays

async function loadRecordings() {
  const response = await fetch("/console/recordings", { headers: { "x-sandd-console": "1" } });
  if (response.status === 401) return showLogin();
  const { recordings, enabled } = await response.json();
  $("#recordings-note").textContent = enabled
    ? "Terminals opened here with “record” are saved as asciicast v2."
    : "No recordings directory configured (ServerOptions.console.recordings).";
  $("#recordings tbody").replaceChildren(
    ...recordings.map((r) =>
      el(
        "tr",
        { "data-recording": r.name, onclick: () => playRecording(r.name) },
        el("td", { class: "mono" }, r.name),
        el("td", {}, `${Math.ceil(r.size / 1024)} KiB`),
        el("td", { title: r.modified }, `${since(r.modified)} ago`),
      )
    ),
  );
}

const player = { term: null, events: [], index: 0, timer: 0, at: 0, playing: false };

async function playRecording(name) {
  const response = await fetch(`/console/recordings/${encodeURIComponent(name)}`);
  const lines = (await response.text()).split("\n").filter(Boolean);
  const header = JSON.parse(lines[0]);
  clearTimeout(player.timer);
  player.term?.dispose();
  player.term = new Terminal({ cols: header.width, rows: header.height, disableStdin: true });
  $("#player").replaceChildren();
  player.term.open($("#player"));
  player.events = lines.slice(1).map((line) => JSON.parse(line));
  player.index = 0;
  player.at = 0;
  $("#replay-title").textContent = name;
  globalThis.sandd.player = player;
  play();
}

function play() {
  if (!player.term) return;
  player.playing = true;
  const step = () => {
    if (!player.playing) return;
    const event = player.events[player.index];
    if (!event) {
      player.playing = false;
      $("#replay-time").textContent += " (end)";
      document.body.dataset.replay = "done";
      return;
    }
    const [time, kind, data] = event;
    const speed = Number($("#replay-speed").value) || 1;
    // Long idle stretches are cut to two seconds, as asciinema does with --idle-time-limit.
    const wait = Math.min(2, Math.max(0, time - player.at)) * 1000 / speed;
    player.timer = setTimeout(() => {
      player.at = time;
      player.index++;
      if (kind === "o") player.term.write(data);
      else if (kind === "r") {
        const [cols, rows] = data.split("x").map(Number);
        if (cols > 0 && rows > 0) player.term.resize(cols, rows);
      }
      $("#replay-time").textContent = `${time.toFixed(1)} s`;
      step();
    }, wait);
  };
  step();
}

$("#replay-play").addEventListener("click", () => {
  if (player.index >= player.events.length) {
    player.index = 0;
    player.at = 0;
    player.term?.reset();
  }
  if (!player.playing) play();
});
$("#replay-pause").addEventListener("click", () => {
  player.playing = false;
  clearTimeout(player.timer);
});

$("#nav-fleet").addEventListener("click", () => {
  if (state.term) show("#terminal-view");
  else show("#fleet-view");
});
$("#nav-replays").addEventListener("click", () => {
  show("#replays-view");
  loadRecordings();
});

// ------------------------------------------------------------------------------------------- start

/** For tests and the curious: the visible screen of the open terminal as text. */
globalThis.sandd = {
  state,
  Terminal,
  term: null,
  player: null,
  screen() {
    const t = state.term?.term;
    if (!t) return "";
    const buffer = t.buffer.active;
    const lines = [];
    for (let i = 0; i < buffer.length; i++) {
      lines.push(buffer.getLine(i)?.translateToString(true) ?? "");
    }
    return lines.join("\n");
  },
};

async function start() {
  const response = await fetch("/console/session", { headers: { "x-sandd-console": "1" } });
  if (response.status === 401) return showLogin();
  const session = await response.json();
  state.canExec = session.scopes.includes("exec") || session.scopes.includes("admin");
  state.canFiles = session.scopes.includes("files") || session.scopes.includes("admin");
  $("#files-upload-label").hidden = !state.canFiles;
  state.recordings = session.recordings;
  $("#who").textContent = session.open ? "open (loopback)" : `signed in as ${session.name}`;
  $("#logout").hidden = session.open;
  $("#new-terminal").hidden = !state.canExec;
  $("#record-label").hidden = !state.recordings || !state.canExec;
  show("#fleet-view");
  await loadFleet();
  follow();
  const fresh = /^#new=(.+)$/.exec(location.hash);
  if (fresh) openTerminal({ daemon: decodeURIComponent(fresh[1]) });
  const match = /^#([tw])=([^/]+)\/(.+)$/.exec(location.hash);
  if (match) {
    // A terminal was open before the reload: pick the session up again, scrollback first.
    openTerminal({
      daemon: decodeURIComponent(match[2]),
      attach: decodeURIComponent(match[3]),
      readOnly: match[1] === "w",
    });
  }
}

start().catch((error) => status(String(error.message ?? error)));
