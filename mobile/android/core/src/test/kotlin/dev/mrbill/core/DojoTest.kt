package dev.mrbill.core

import dev.mrbill.wire.ChatMessage
import dev.mrbill.wire.CreateDojo
import dev.mrbill.wire.Peer
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.util.concurrent.CopyOnWriteArrayList

/** What a session told the app, for the test to wait on. */
class Recorder : DojoListener {
    @Volatile var code: String = ""
    val chat = CopyOnWriteArrayList<ChatMessage>()
    @Volatile var peers: List<Peer> = listOf()
    @Volatile var cursors: List<RemoteCursor> = listOf()
    val signals = CopyOnWriteArrayList<Pair<ULong, String>>()
    val states = CopyOnWriteArrayList<LiveState>()

    override fun onCode(code: String) { this.code = code }
    override fun onChat(message: ChatMessage) { chat.add(message) }
    override fun onPeers(peers: List<Peer>) { this.peers = peers }
    override fun onCursors(cursors: List<RemoteCursor>) { this.cursors = cursors }
    override fun onSignal(from: ULong, signalJson: String) { signals.add(from to signalJson) }
    override fun onState(state: LiveState) { states.add(state) }
}

/** Waits (at most 10 s) until [done] holds. */
suspend fun eventually(what: String, done: () -> Boolean) {
    val deadline = System.currentTimeMillis() + 10_000
    while (!done()) {
        if (System.currentTimeMillis() > deadline) throw AssertionError("timed out waiting for $what")
        delay(50)
    }
}

/** Two apps in one dojo through the router: edits converge, chat arrives, leaving closes. */
class DojoTest {
    private val router = System.getProperty("mrbill.router")
    private val tenant = System.getProperty("mrbill.tenant")
    private val email = System.getProperty("mrbill.email")
    private val password = System.getProperty("mrbill.password")

    private suspend fun signedIn(): MrBill {
        val core = MrBill(router, MemoryTokenStore())
        core.resolve(tenant)
        core.login(email, password)
        return core
    }

    @Test
    fun twoSessionsConvergeAndChat() = runBlocking {
        val host = signedIn()
        val guest = signedIn()
        val dojo = host.createDojo(CreateDojo(
            name = "Pairing from Kotlin", description = "", language = "rust",
            maxParticipants = null, private = false, initialCode = "fn main() {}\n", scheduledStart = null,
        ))
        val a = Recorder()
        val b = Recorder()
        val sessionA = host.openDojo(dojo.id, a)
        val sessionB = guest.openDojo(dojo.id, b)
        eventually("both live") { a.states.contains(LiveState.Live) && b.states.contains(LiveState.Live) }
        eventually("the initial code on both") { sessionA.code() == "fn main() {}\n" && sessionB.code() == "fn main() {}\n" }
        eventually("each sees the other") { a.peers.size == 1 && b.peers.size == 1 }

        sessionA.insert(0u, "// hello\n")
        sessionB.insert(1000u, "// from B\n")
        eventually("the edits to converge") {
            sessionA.code() == sessionB.code() && sessionA.code().contains("hello") && sessionA.code().contains("from B")
        }
        assertTrue(sessionA.code().startsWith("// hello\n"))
        // A listener is told of remote changes (a session's own edits are the app's): whether
        // B's last word was A's edit or its own depends on the order they crossed. A's next edit
        // reaches B after both, and B's listener hears the whole merged text on its own thread.
        sessionA.insert(0u, "// ready\n")
        eventually("B's listener to have the merged text") {
            b.code == sessionA.code() && b.code.startsWith("// ready\n// hello\n") && b.code.contains("from B")
        }

        sessionB.sendChat("shall we add a test?")
        eventually("the chat on A") { a.chat.any { it.text == "shall we add a test?" } }
        assertTrue(host.chatHistory(dojo.id).items.any { it.text == "shall we add a test?" })

        sessionB.leave()
        eventually("B closed") { b.states.any { it is LiveState.Closed } }
        eventually("A sees B leave") { a.peers.isEmpty() }
        sessionA.leave()
        eventually("A closed") { a.states.any { it is LiveState.Closed } }
    }

    /** The dojo service dies mid-session (kill -9): both sessions reconnect by themselves, and
     * an edit made while away reaches the other once back. */
    @Test
    fun aDroppedConnectionComesBackAndEditsMadeMeanwhileArrive() = runBlocking {
        val host = signedIn()
        val guest = signedIn()
        val dojo = host.createDojo(CreateDojo(
            name = "Resilience", description = "", language = "kotlin",
            maxParticipants = null, private = false, initialCode = "val x = 1\n", scheduledStart = null,
        ))
        val a = Recorder()
        val b = Recorder()
        val sessionA = host.openDojo(dojo.id, a)
        val sessionB = guest.openDojo(dojo.id, b)
        eventually("both synced") { sessionA.code() == "val x = 1\n" && sessionB.code() == "val x = 1\n" }

        val ready = java.io.File(System.getProperty("mrbill.dojo.ready")).readText()
        val pid = Regex("\"pid\"\\s*:\\s*(\\d+)").find(ready)!!.groupValues[1].toLong()
        ProcessHandle.of(pid).get().destroyForcibly()
        eventually("A to notice") { a.states.any { it is LiveState.Reconnecting } }
        sessionA.insert(0u, "// written while away\n")
        eventually("both live again") {
            a.states.last() == LiveState.Live && b.states.last() == LiveState.Live
        }
        eventually("the edit made while away to reach B") {
            sessionB.code() == "// written while away\nval x = 1\n" && sessionA.code() == sessionB.code()
        }
        sessionA.leave()
        sessionB.leave()
    }

    /** A cursor shown by the other app, staying on its characters while text is typed before
     * it (indexes in UTF-16 units, as Kotlin counts), and call signals relayed between peers. */
    @Test
    fun cursorsFollowTheTextAndCallSignalsReachThePeer() = runBlocking {
        val host = signedIn()
        val guest = signedIn()
        val dojo = host.createDojo(CreateDojo(
            name = "Cursors", description = "", language = "rust",
            maxParticipants = null, private = false, initialCode = "fn main() {}", scheduledStart = null,
        ))
        val a = Recorder()
        val b = Recorder()
        val sessionA = host.openDojo(dojo.id, a)
        val sessionB = guest.openDojo(dojo.id, b)
        eventually("both synced and present") {
            sessionA.code() == "fn main() {}" && sessionB.code() == "fn main() {}" && a.peers.size == 1 && b.peers.size == 1
        }
        sessionA.setUser("Ana", "#1e88e5")
        sessionA.setCursor(3u, 7u)
        eventually("Ana's selection on B") { b.cursors.any { it.name == "Ana" && it.anchor == 3u && it.head == 7u } }
        assertEquals("#1e88e5", b.cursors.single().color)
        assertTrue("one's own cursor is not shown as another's", a.cursors.isEmpty())

        val crab = "// \uD83E\uDD80\n"
        sessionB.insert(0u, crab)
        assertEquals(6, crab.length)
        eventually("the selection to stay on `main`") { b.cursors.single().let { it.anchor == 9u && it.head == 13u } }
        eventually("A to have B's edit") { sessionA.code() == crab + "fn main() {}" }
        assertEquals("main", sessionA.code().substring(9, 13))
        sessionA.clearCursor()
        eventually("the cursor gone") { b.cursors.isEmpty() }

        val toA = b.peers.single().peer
        sessionB.sendSignal(toA, """{"kind": "offer", "sdp": "v=0"}""")
        eventually("the offer on A") { a.signals.any { it.second.contains("offer") && it.second.contains("v=0") } }
        assertEquals(a.peers.single().peer, a.signals.first().first)
        try {
            sessionB.sendSignal(toA, "{\"kind\": \"telepathy\"}")
            throw AssertionError("not a signal")
        } catch (e: CoreException.Validation) {
            assertEquals("signal", e.fields.single().field)
        }
        sessionA.leave()
        sessionB.leave()
    }
}
