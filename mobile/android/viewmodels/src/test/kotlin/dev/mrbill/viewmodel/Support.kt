package dev.mrbill.viewmodel

import dev.mrbill.core.MemoryTokenStore
import dev.mrbill.core.MrBill
import dev.mrbill.core.TokenStore
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.withTimeoutOrNull

/**
 * The platform the Rust driver (`tests/e2e/tests/mobile.rs`) started, as system properties:
 * its router, a tenant with its admin, an invite (and a revoked one), a suspended tenant.
 */
object Platform {
    val router: String = System.getProperty("mrbill.router")
    val tenant: String = System.getProperty("mrbill.tenant")
    val email: String = System.getProperty("mrbill.email")
    val password: String = System.getProperty("mrbill.password")
    val invite: String = System.getProperty("mrbill.invite")
    val revokedInvite: String = System.getProperty("mrbill.revokedInvite")
    val suspended: String = System.getProperty("mrbill.suspended")

    /** An app as a phone runs it: the real core, the view models on a scope of their own. */
    fun app(store: TokenStore = MemoryTokenStore(), router: String = this.router): AppModel =
        AppModel(MrBill(router, store), CoroutineScope(SupervisorJob() + Dispatchers.Default))

    /** An app signed in as the tenant's admin (through its screens). */
    suspend fun signedIn(store: TokenStore = MemoryTokenStore()): AppModel {
        val app = app(store)
        app.start()
        app.companyScreen().use { company ->
            company.setInput(tenant)
            company.submit()
            app.state.await("the sign-in screen") { it is AppState.SigningIn }
        }
        app.signInScreen().use { signIn ->
            signIn.setEmail(email)
            signIn.setPassword(password)
            signIn.submit()
            app.state.await("signed in") { it is AppState.SignedIn }
        }
        return app
    }
}

/** The first state matching [done], waiting at most [timeoutMs]; says what it waited for. */
suspend fun <T> StateFlow<T>.await(what: String, timeoutMs: Long = 15_000, done: (T) -> Boolean): T =
    withTimeoutOrNull(timeoutMs) { first(done) } ?: throw AssertionError("timed out waiting for $what; last: $value")
