package dev.mrbill.core

import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File

/** Account self-service through the core, as a newcomer: the codes arrive in the local cell's
 * mailbox (`mrbill.mailbox`), as a person reads them from their mail. */
class AccountTest {
    private val router = System.getProperty("mrbill.router")
    private val tenant = System.getProperty("mrbill.tenant")
    private val email = System.getProperty("mrbill.email")
    private val password = System.getProperty("mrbill.password")
    private val mailbox = File(System.getProperty("mrbill.mailbox"))

    /** The mails in the mailbox now. */
    private fun mails(): Set<String> = mailbox.listFiles().orEmpty().map { it.name }.toSet()

    /** The code in a mail to [to] that is not among [before] (waiting at most 10 s). */
    private suspend fun mailedCode(to: String, before: Set<String>): String {
        val deadline = System.currentTimeMillis() + 10_000
        while (System.currentTimeMillis() < deadline) {
            // A mail is written to a `.tmp` file, then renamed: read only finished ones (and
            // one renamed between the listing and the read is simply read on the next turn).
            val mail = mailbox.listFiles().orEmpty()
                .filter { it.name !in before && !it.name.endsWith(".tmp") }
                .mapNotNull { f -> runCatching { f.readText() }.getOrNull() }
                .firstOrNull { it.contains(to) }
            if (mail != null) {
                val body = mail.replace("=\r\n", "").replace("=\n", "").replace("\r\n", "\n")
                return body.lines().first { it.startsWith("    ") && it.isNotBlank() }.trim()
            }
            delay(100)
        }
        throw AssertionError("no mail to $to")
    }

    @Test
    fun signUpWithAMailedCodeThenProfileAndPasswords() = runBlocking {
        val core = MrBill(router, MemoryTokenStore())
        core.resolve(tenant)
        val before = mails()
        val newcomer = "dev@$tenant.example"
        assertTrue(core.signUp(newcomer, "a long enough password") > System.currentTimeMillis())
        try {
            core.confirmEmail(newcomer, "000000")
            fail("a wrong code")
        } catch (e: CoreException.Refused) {
            assertEquals("invalid_confirmation_code", e.code)
        }
        val member = core.confirmEmail(newcomer, mailedCode(newcomer, before))
        assertEquals(newcomer, member.email)
        assertEquals("Dev Eloper", core.updateProfile("Dev Eloper").displayName)

        // Forgot and reset: every session ends; the new password signs in.
        val beforeReset = mails()
        core.forgotPassword(newcomer)
        core.resetPassword(mailedCode(newcomer, beforeReset), "a brand new password")
        try {
            core.me()
            fail("sessions end with a reset")
        } catch (e: CoreException.SignedOut) {
        }
        core.login(newcomer, "a brand new password")

        // Change: this session goes on with fresh tokens.
        core.changePassword("a brand new password", "yet another password")
        assertEquals(newcomer, core.me().email)
        try {
            MrBill(router, MemoryTokenStore()).also { it.resolve(tenant) }.login(newcomer, "a brand new password")
            fail("the old password")
        } catch (e: CoreException.InvalidCredentials) {
        }
    }

    /** A password changed on another device revokes this one's sessions, a live dojo room
     * included: the room closes with 4001 within the documented 30 s and the app is signed out. */
    @Test
    fun aRevokedSessionClosesItsDojoAndSignsOut() = runBlocking {
        val person = "rev@$tenant.example"
        val phone = MrBill(router, MemoryTokenStore())
        phone.resolve(tenant)
        val before = mails()
        phone.signUp(person, "the first password")
        phone.confirmEmail(person, mailedCode(person, before))
        val dojo = phone.createDojo(dev.mrbill.wire.CreateDojo(
            name = "Revoked", description = "", language = "rust",
            maxParticipants = null, private = false, initialCode = "", scheduledStart = null,
        ))
        val room = Recorder()
        // Held for the room's life: a handle the GC collects closes the room (1000) by itself.
        val session = phone.openDojo(dojo.id, room)
        eventually("live") { room.states.contains(LiveState.Live) }

        val laptop = MrBill(router, MemoryTokenStore())
        laptop.resolve(tenant)
        laptop.login(person, "the first password")
        laptop.changePassword("the first password", "the second password")

        val deadline = System.currentTimeMillis() + 35_000
        while (room.states.none { it is LiveState.Closed } && System.currentTimeMillis() < deadline) {
            delay(200)
        }
        val closed = room.states.last()
        assertEquals(LiveState.Closed(4001u, "token revoked"), closed)
        assertTrue("signed out", !phone.signedIn())
        assertEquals(person, laptop.me().email)
        session.destroy()
    }
}
