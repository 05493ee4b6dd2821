package dev.mrbill.viewmodel

import dev.mrbill.core.LiveState
import dev.mrbill.core.MemoryTokenStore
import dev.mrbill.core.MrBill
import kotlinx.coroutines.runBlocking
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Test
import java.util.concurrent.CopyOnWriteArrayList

/**
 * A stand-in for the platform's WebRTC stack (none runs on a JVM): it offers and answers with
 * placeholder SDP and records what reached it, so the test follows the signalling the model
 * and the real core carry between two real sessions.
 */
class RecordingCall : CallEngine {
    val received = CopyOnWriteArrayList<Pair<ULong, String>>()
    val hungUp = CopyOnWriteArrayList<ULong>()
    @Volatile var silenced = false

    override fun call(peer: ULong, send: (String) -> Unit) = send("""{"kind": "offer", "sdp": "v=0 offer"}""")

    override fun receive(peer: ULong, signalJson: String, send: (String) -> Unit) {
        received.add(peer to signalJson)
        if (signalJson.contains("\"offer\"")) send("""{"kind": "answer", "sdp": "v=0 answer"}""")
    }

    override fun setMuted(muted: Boolean) { silenced = muted }
    override fun hangUp(peer: ULong) { hungUp.add(peer) }
}

/** Two phones in one dojo through their screens' models and the real core. */
class DojoModelsTest {
    @Test
    fun createJoinByCodeEditWithCursorsChatAndCall() = runBlocking {
        val host = Platform.signedIn()
        val guest = Platform.signedIn()
        val dojos = host.dojos()
        dojos.state.await("the list") { !it.loading }
        dojos.editForm { it.copy(name = "", language = "rust") }
        dojos.create()
        assertTrue("the name is required", dojos.state.await("refused") { it.problem != null }.fieldErrors.containsKey("name"))
        dojos.editForm { it.copy(name = "Pairing on the phone", initialCode = "fn main() {}\n", private = true) }
        dojos.create()
        val dojo = dojos.state.await("created") { it.open != null }.open!!
        dojos.opened()
        val code = dojo.joinCode ?: throw AssertionError("a private dojo has a join code")

        val guestDojos = guest.dojos()
        guestDojos.setJoinCode("nope-nope")
        guestDojos.join()
        assertTrue(guestDojos.state.await("a wrong code refused") { it.problem != null }.problem !is Problem.Offline)
        guestDojos.setJoinCode(code)
        guestDojos.join()
        assertEquals(dojo.id, guestDojos.state.await("joined") { it.open != null }.open!!.id)

        val callA = RecordingCall()
        val callB = RecordingCall()
        val a = host.dojoRoom(dojo, callA)
        val b = guest.dojoRoom(dojo, callB)
        a.state.await("A live with B") { it.live == LiveState.Live && it.peers.size == 1 && it.code == "fn main() {}\n" }
        b.state.await("B live with A") { it.live == LiveState.Live && it.peers.size == 1 && it.code == "fn main() {}\n" }

        // A types at the start: the editor hands the whole text and the caret.
        a.edit("// hi\nfn main() {}\n", 6, 6)
        b.state.await("A's edit on B") { it.code == "// hi\nfn main() {}\n" }
        b.state.await("A's caret on B") { s -> s.cursors.any { it.head == 6u && it.name.isNotEmpty() } }
        // B deletes `main` and types `run` while A is on line 1: both converge.
        b.edit("// hi\nfn run() {}\n", 12, 12)
        a.state.await("B's edit on A") { it.code == "// hi\nfn run() {}\n" }
        // The smallest change: `main` and `run` share their last letter.
        assertEquals(DojoRoomModel.Change(9, 3, "ru"), DojoRoomModel.diff("// hi\nfn main() {}\n", "// hi\nfn run() {}\n"))
        // Never half a character: emoji sharing their first or their second UTF-16 unit.
        assertEquals(DojoRoomModel.Change(0, 2, "\uD83D\uDE01"), DojoRoomModel.diff("\uD83D\uDE00", "\uD83D\uDE01"))
        assertEquals(DojoRoomModel.Change(0, 2, "\uD83E\uDE00"), DojoRoomModel.diff("\uD83D\uDE00", "\uD83E\uDE00"))

        b.setDraft("looks good")
        b.sendChat()
        assertEquals("", b.state.value.draft)
        a.state.await("the chat on A") { s -> s.chat.any { it.text == "looks good" } }

        a.startCall()
        b.state.await("B rings") { it.call is CallState.Ringing }
        b.acceptCall()
        assertTrue(b.state.value.call is CallState.InCall)
        // B's engine got A's offer and answered; the answer reached A's engine.
        assertTrue(callB.received.any { it.second.contains("v=0 offer") })
        a.state.await("A in the call") { it.call is CallState.InCall }
        waitFor("the answer on A") { callA.received.any { it.second.contains("v=0 answer") } }
        b.toggleMute()
        assertTrue(callB.silenced && (b.state.value.call as CallState.InCall).muted)
        a.hangUp()
        b.state.await("B's call over") { it.call == CallState.Idle }
        assertEquals(1, callB.hungUp.size)

        a.close()
        b.state.await("A gone from B") { it.peers.isEmpty() && it.cursors.isEmpty() }
        b.close()
        listOf(dojos, guestDojos).forEach { it.close() }
    }

    /** The password changed on another device: the room closes with 4001 and the app is signed out. */
    @Test
    fun aSessionRevokedMidDojoSignsTheAppOut() = runBlocking {
        val store = MemoryTokenStore()
        val app = Platform.signedIn(store)
        val dojos = app.dojos()
        dojos.editForm { it.copy(name = "Revocation", language = "rust") }
        dojos.create()
        val dojo = dojos.state.await("created") { it.open != null }.open!!
        val room = app.dojoRoom(dojo, null)
        room.state.await("live") { it.live == LiveState.Live }

        // Elsewhere: the same user changes the password (other sessions end) and back again.
        val elsewhere = MrBill(Platform.router, MemoryTokenStore())
        elsewhere.resolve(Platform.tenant)
        elsewhere.login(Platform.email, Platform.password)
        elsewhere.changePassword(Platform.password, Platform.password + " for a moment")
        elsewhere.changePassword(Platform.password + " for a moment", Platform.password)

        val closed = room.state.await("closed with 4001", 45_000) { it.live is LiveState.Closed }
        assertEquals(4001, (closed.live as LiveState.Closed).code.toInt())
        assertEquals("Your session ended. Sign in again.", closed.closedBecause)
        val signIn = app.state.await("signed out") { it is AppState.SigningIn } as AppState.SigningIn
        assertEquals("Your session ended. Sign in again.", signIn.notice)
        assertNull(store.load())
        room.close()
        dojos.close()
    }

    private suspend fun waitFor(what: String, done: () -> Boolean) {
        val deadline = System.currentTimeMillis() + 10_000
        while (!done()) {
            if (System.currentTimeMillis() > deadline) throw AssertionError("timed out waiting for $what")
            kotlinx.coroutines.delay(50)
        }
    }
}
