// The Moleculer peer's two nodes: its brokerless TCP transporter (on loopback; Moleculer has no
// Unix-socket transport) with static URLs, because UDP discovery may not be allowed here.
// `address` is "<server port>:<client port>".
import type { ServiceBroker } from 'moleculer';

export async function moleculerNode(address: string, side: 'server' | 'client'): Promise<ServiceBroker> {
  const { ServiceBroker } = await import('moleculer');
  const [serverPort, clientPort] = address.split(':').map(Number);
  const [port, peerPort, peer] =
    side === 'server' ? [serverPort, clientPort, 'bench-client'] : [clientPort, serverPort, 'bench-server'];
  return new ServiceBroker({
    nodeID: `bench-${side}`,
    logger: false,
    transporter: { type: 'TCP', options: { udpDiscovery: false, port, urls: `127.0.0.1:${peerPort}/${peer}` } },
  });
}
