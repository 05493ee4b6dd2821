// A standard Yjs client (yjs + y-websocket, as browsers and the apps' web views use them)
// against dojo-service: connect, sync, edit, publish awareness, and wait for a peer's edit.
//
// usage: node client.mjs <serverUrl> <dojoId> <token> <expectInitial> <waitFor>
// Prints one JSON line: {"synced": true, "text": "...", "peers": n} and exits 0, or exits 1.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const [serverUrl, dojo, token, expectInitial, waitFor] = process.argv.slice(2)
const fail = (why) => { console.error(why); process.exit(1) }
setTimeout(() => fail('timed out'), 20000)

const doc = new Y.Doc()
const code = doc.getText('code')
// serverUrl = <endpoint>/v1/dojos/{id}, room `live`, the token as a query parameter.
const provider = new WebsocketProvider(`${serverUrl}/v1/dojos/${dojo}`, 'live', doc, {
  WebSocketPolyfill: WebSocket,
  params: { token },
  disableBc: true,
})
provider.awareness.setLocalStateField('user', { name: 'yjs-client', color: '#30bced' })
provider.on('connection-close', (event) => {
  if (event && event.code >= 4000) fail(`closed with ${event.code}`)
})
provider.once('sync', (synced) => {
  if (!synced) return
  if (code.toString() !== expectInitial) fail(`initial text ${JSON.stringify(code.toString())}`)
  code.insert(code.length, ' from yjs')
  const check = () => {
    if (code.toString() === waitFor) {
      const peers = provider.awareness.getStates().size
      console.log(JSON.stringify({ synced: true, text: code.toString(), peers }))
      provider.destroy()
      setTimeout(() => process.exit(0), 100)
    }
  }
  code.observe(check)
  check()
})
