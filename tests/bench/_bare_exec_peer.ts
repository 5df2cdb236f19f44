// The floor of a remote exec on this machine: a peer process with no SandD code, Deno's own WebSocket client and
// Deno.Command, dialled to a bare Deno.serve WebSocket endpoint in the bench process. On each message it runs the
// command the message names (a JSON argv) with piped stdout/stderr, as the daemon does, and answers with its exit
// code. What a SandD exec costs above this is SandD's own work; what this costs above a local spawn is the two
// WebSocket hops and the second process's wake-ups, which every remote exec over Deno's WebSocket pays here.
//
//   deno run -A tests/bench/_bare_exec_peer.ts ws://127.0.0.1:PORT/
const url = Deno.args[0];
if (url === undefined) throw new Error("Usage: _bare_exec_peer.ts WS_URL");
const socket = new WebSocket(url);
socket.onmessage = async (event) => {
  const argv = JSON.parse(String(event.data)) as string[];
  const output = await new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  socket.send(String(output.code));
};
socket.onclose = () => Deno.exit(0);
