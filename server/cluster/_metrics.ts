// The cluster's Prometheus series, appended to the `/metrics` answer of a cluster node: daemons by the node that
// holds them (the whole cluster as this node sees it), whether NATS is reachable, and relayed messages refused.
import type { HttpMount } from "../_http.ts";
import type { Cluster } from "./cluster.ts";

/** Prometheus label value escaping. */
function label(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** The cluster's series in the text exposition format. */
export function renderClusterMetrics(cluster: Cluster): string {
  const lines = [
    "# HELP sandd_cluster_daemons Daemons in the cluster by the controller node that holds them.",
    "# TYPE sandd_cluster_daemons gauge",
  ];
  for (const [node, count] of [...cluster.daemonsByNode()].sort()) {
    lines.push(`sandd_cluster_daemons{node="${label(node)}"} ${count}`);
  }
  lines.push(
    "# HELP sandd_cluster_nats_up Whether this node reaches NATS (1) or not (0).",
    "# TYPE sandd_cluster_nats_up gauge",
    `sandd_cluster_nats_up ${cluster.up ? 1 : 0}`,
    "# HELP sandd_cluster_slot This node's cluster slot.",
    "# TYPE sandd_cluster_slot gauge",
    `sandd_cluster_slot{node="${label(cluster.name)}"} ${cluster.slot}`,
    "# HELP sandd_cluster_relay_refused_total Relayed messages refused (ids outside the sender's slot, invalid).",
    "# TYPE sandd_cluster_relay_refused_total counter",
    `sandd_cluster_relay_refused_total ${cluster.refused}`,
  );
  return lines.join("\n") + "\n";
}

/** The `/metrics` mount with the cluster's series appended to a successful scrape. */
export function withClusterMetrics(mount: HttpMount, cluster: Cluster): HttpMount {
  return {
    ...mount,
    async handle(request, info) {
      const response = await mount.handle(request, info);
      if (response.status !== 200 || request.method !== "GET") return response;
      const body = (await response.text()) + renderClusterMetrics(cluster);
      return new Response(body, { status: 200, headers: response.headers });
    },
  };
}
