package dev.mrbill.core

import dev.mrbill.wire.PocInput
import dev.mrbill.wire.PocPatch
import dev.mrbill.wire.Role
import dev.mrbill.wire.Visibility
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.runBlocking
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/**
 * The real core (libmrbill_core through JNA, as the Android app loads it) against a real local
 * platform the Rust driver (`tests/e2e/tests/mobile.rs`) started: its router URL, a tenant and
 * its admin arrive as system properties.
 */
class CoreTest {
    private val router = System.getProperty("mrbill.router")
    private val tenant = System.getProperty("mrbill.tenant")
    private val email = System.getProperty("mrbill.email")
    private val password = System.getProperty("mrbill.password")

    private fun signedIn(store: TokenStore = MemoryTokenStore()): MrBill = runBlocking {
        val core = MrBill(router, store)
        core.resolve(tenant)
        core.login(email, password)
        core
    }

    private fun poc(name: String, language: String, tags: List<String>) = PocInput(
        name = name,
        description = "made by the Kotlin test",
        repositoryUrl = "https://github.com/acme/${name.lowercase().replace(' ', '-')}",
        language = language,
        tags = tags,
        frameworks = listOf(),
        visibility = Visibility.TENANT,
    )

    @Test
    fun findsTheCompanyBySlugOrWorkEmailAndSaysWhenThereIsNone() = runBlocking {
        val core = MrBill(router, MemoryTokenStore())
        val bySlug = core.resolve(tenant)
        assertEquals(tenant, bySlug.tenant)
        assertTrue(bySlug.endpoint, bySlug.endpoint.endsWith("/t/$tenant"))
        assertEquals(bySlug, core.resolve("someone@$tenant.example"))
        try {
            core.resolve("no-such-company")
            fail("a company that does not exist")
        } catch (e: CoreException.CompanyNotFound) {
        }
    }

    @Test
    fun aWrongPasswordIsSaidAsSuchAndTheRightOneSignsIn() = runBlocking {
        val core = MrBill(router, MemoryTokenStore())
        core.resolve(tenant)
        try {
            core.login(email, "not the password at all")
            fail("wrong password")
        } catch (e: CoreException.InvalidCredentials) {
        }
        val user = core.login(email, password)
        assertEquals(Role.ADMIN, user.role)
        assertTrue(core.signedIn())
        assertEquals(email, core.me().email)
    }

    @Test
    fun refusedInputNamesTheFieldAndSearchToleratesTypos() = runBlocking {
        val core = signedIn()
        try {
            core.createPoc(poc("Broken link", "rust", listOf()).copy(repositoryUrl = "ftp://nowhere"))
            fail("an invalid repository URL")
        } catch (e: CoreException.Validation) {
            assertEquals(listOf("repository_url"), e.fields.map { it.field })
        }
        val made = core.createPoc(poc("Kubernetes operator", "rust", listOf("k8s", "cloud")))
        core.createPoc(poc("Realtime whiteboard", "typescript", listOf("collab")))
        // The index follows writes within moments (its outbox), not in the same instant.
        val typo = PocQuery(text = "kubernetis", language = null, tags = listOf(), mine = false, page = 1u, perPage = 20u)
        var found = core.searchPocs(typo)
        val deadline = System.currentTimeMillis() + 10_000
        while (found.items.none { it.id == made.id } && System.currentTimeMillis() < deadline) {
            kotlinx.coroutines.delay(100)
            found = core.searchPocs(typo)
        }
        assertTrue(found.items.any { it.id == made.id })
        val rust = core.searchPocs(PocQuery(text = null, language = "rust", tags = listOf(), mine = true, page = 1u, perPage = 20u))
        assertTrue(rust.items.all { it.language == "rust" })
        assertTrue(rust.facets.language.any { it.value == "rust" })
        val edited = core.updatePoc(made.id, PocPatch(name = "Kubernetes operator v2", description = null, repositoryUrl = null, language = null, tags = null, frameworks = null, visibility = null))
        assertEquals("Kubernetes operator v2", edited.name)
        assertTrue(core.dashboard().total >= 2uL)
        core.deletePoc(made.id)
        try {
            core.poc(made.id)
            fail("deleted")
        } catch (e: CoreException.NotFound) {
        }
    }

    /** Tokens about to expire are refreshed once, however many calls need them at that moment:
     * refresh tokens are single use, so a second refresh would sign the user out. */
    @Test
    fun anExpiringSessionIsRefreshedOnceForManyConcurrentCalls() = runBlocking {
        val store = MemoryTokenStore()
        val core = signedIn(store)
        val before = store.load()!!
        store.save(before.copy(accessExpiresAtMs = System.currentTimeMillis() - 1))
        val users = (1..12).map { async { core.me() } }.awaitAll()
        assertTrue(users.all { it.email == email })
        val after = store.load()!!
        assertNotEquals(before.refreshToken, after.refreshToken)
        assertTrue(after.accessExpiresAtMs > System.currentTimeMillis())
        // A store holding a session survives a restart of the app: a new core picks it up.
        assertEquals(email, MrBill(router, store).me().email)
    }

    @Test
    fun loggingOutEndsTheSessionHereAndOnTheServer() = runBlocking {
        val store = MemoryTokenStore()
        val core = signedIn(store)
        val session = store.load()!!
        core.logout()
        assertFalse(core.signedIn())
        try {
            core.me()
            fail("signed out")
        } catch (e: CoreException.SignedOut) {
        }
        // The revoked refresh token no longer works either.
        store.save(session.copy(accessExpiresAtMs = 0))
        try {
            core.me()
            fail("revoked")
        } catch (e: CoreException.SignedOut) {
        }
        assertFalse("a dead session is dropped", core.signedIn())
    }

    @Test
    fun anUnreachableRouterIsANetworkErrorNotACrash() = runBlocking {
        val core = MrBill("http://127.0.0.1:9", MemoryTokenStore())
        try {
            core.resolve(tenant)
            fail("nothing listens there")
        } catch (e: CoreException.Network) {
        }
    }
}
