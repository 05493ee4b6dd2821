package dev.mrbill.viewmodel

import dev.mrbill.core.MemoryTokenStore
import dev.mrbill.core.MrBill
import dev.mrbill.core.CoreException
import dev.mrbill.wire.Role
import kotlinx.coroutines.runBlocking
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/** The company and sign-in screens' models driving the real core against the real platform. */
class SessionModelsTest {
    @Test
    fun aWrongCompanyThenAWrongPasswordAreSaidAsSuchAndTheRightOnesSignIn() = runBlocking {
        val app = Platform.app()
        app.start()
        assertEquals(AppState.ChoosingCompany, app.state.value)
        val company = app.companyScreen()
        company.setInput("no-such-company")
        company.submit()
        company.state.await("the company refused") { it.problem == Problem.NoSuchCompany }
        company.setInput("someone@${Platform.tenant}.example")
        company.submit()
        val signingIn = app.state.await("the sign-in screen") { it is AppState.SigningIn } as AppState.SigningIn
        assertEquals(Platform.tenant, signingIn.company.tenant)

        val signIn = app.signInScreen()
        signIn.setEmail(Platform.email)
        signIn.setPassword("not the password at all")
        signIn.submit()
        signIn.state.await("wrong password") { it.problem == Problem.WrongPassword }
        signIn.setPassword(Platform.password)
        signIn.submit()
        val signedIn = app.state.await("signed in") { it is AppState.SignedIn } as AppState.SignedIn
        assertEquals(Role.ADMIN, signedIn.user.role)
        app.signOut()
        app.state.await("signed out") { it is AppState.SigningIn }
        assertTrue(!app.core.signedIn())
    }

    /** A restarted app picks up its stored session; an ended one lands on sign-in, saying so. */
    @Test
    fun aStoredSessionIsPickedUpAndARevokedOneSaysItEnded() = runBlocking {
        val store = MemoryTokenStore()
        Platform.signedIn(store)
        val restarted = Platform.app(store)
        restarted.start()
        restarted.state.await("signed in from the store") { it is AppState.SignedIn }

        // The session is revoked elsewhere (a logout with the same tokens), and its access
        // token runs out: the refresh is refused.
        val session = store.load() ?: throw AssertionError("a stored session")
        MrBill(Platform.router, MemoryTokenStore().also { it.save(session) }).logout()
        store.save(session.copy(accessExpiresAtMs = 0))
        val pocs = restarted.pocList()
        val ended = restarted.state.await("the session ended") { it is AppState.SigningIn } as AppState.SigningIn
        assertEquals("Your session ended. Sign in again.", ended.notice)
        pocs.close()
    }

    @Test
    fun aSuspendedCompanyHasItsOwnScreen() = runBlocking {
        val app = Platform.app()
        app.start()
        val company = app.companyScreen()
        company.setInput(Platform.suspended)
        company.submit()
        val state = app.state.await("the suspended screen") { it is AppState.Suspended } as AppState.Suspended
        assertEquals(Platform.suspended, state.company.tenant)
        app.switchCompany()
        assertEquals(AppState.ChoosingCompany, app.state.value)
    }

    /** Registering with an invite; a revoked (or expired) invite is refused as such; the login
     * throttle's wait is shown and counted down. */
    @Test
    fun invitesAndTheThrottle() = runBlocking {
        val app = Platform.app()
        app.start()
        app.companyScreen().use {
            it.setInput(Platform.tenant)
            it.submit()
            app.state.await("the sign-in screen") { s -> s is AppState.SigningIn }
        }
        val signIn = app.signInScreen()
        signIn.show(SignInMode.REGISTER)
        signIn.setEmail("revoked@mobile.example")
        signIn.setPassword("a long enough password")
        signIn.setInvite(Platform.revokedInvite)
        signIn.submit()
        val refused = signIn.state.await("the revoked invite refused") { it.problem != null }.problem
        assertEquals(Problem.Refused("invalid_invite", (refused as Problem.Refused).detail), refused)
        signIn.setEmail("invited@mobile.example")
        signIn.setInvite(Platform.invite)
        signIn.submit()
        val member = app.state.await("registered and signed in") { it is AppState.SignedIn } as AppState.SignedIn
        assertEquals(Role.MEMBER, member.user.role)

        val other = Platform.app()
        other.start()
        other.companyScreen().use {
            it.setInput(Platform.tenant)
            it.submit()
            other.state.await("the sign-in screen") { s -> s is AppState.SigningIn }
        }
        val guesser = other.signInScreen()
        guesser.setEmail("throttled@mobile.example")
        guesser.setPassword("guess")
        var problem: Problem? = null
        for (attempt in 1..8) {
            guesser.submit()
            problem = guesser.state.await("attempt $attempt answered") { !it.busy && it.problem != null }.problem
            if (problem is Problem.TooManyAttempts) break
            guesser.setPassword("guess $attempt")
        }
        val blocked = problem as? Problem.TooManyAttempts ?: throw AssertionError("never throttled: $problem")
        assertTrue("Retry-After ${blocked.retryAfterSecs}", blocked.retryAfterSecs in 1..900)
        val waiting = guesser.state.value.waitSecs()
        assertTrue("a countdown: $waiting", waiting in 1..blocked.retryAfterSecs)
        guesser.submit()
        assertTrue("no request while blocked", !guesser.state.value.busy)
    }

    /** A server that cannot be reached is retried with backoff, then said plainly; no crash. */
    @Test
    fun anUnreachableServerIsRetriedThenShown() = runBlocking {
        val core = MrBill("http://127.0.0.1:9", MemoryTokenStore())
        val retries = mutableListOf<Int>()
        val started = System.currentTimeMillis()
        try {
            withRetry(attempts = 3, firstDelayMs = 100, onRetry = { attempt, _ -> retries.add(attempt) }) { core.resolve("acme") }
            fail("nothing listens there")
        } catch (e: CoreException.Network) {
        }
        assertEquals(listOf(1, 2), retries)
        assertTrue("backed off 100 + 200 ms", System.currentTimeMillis() - started >= 300)

        val app = Platform.app(router = "http://127.0.0.1:9")
        app.start()
        val company = app.companyScreen()
        company.setInput(Platform.tenant)
        company.submit()
        assertTrue(company.state.await("offline") { it.problem != null }.problem is Problem.Offline)
        assertEquals(AppState.ChoosingCompany, app.state.value)
    }
}
