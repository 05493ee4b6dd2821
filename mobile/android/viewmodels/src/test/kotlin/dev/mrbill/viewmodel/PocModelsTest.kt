package dev.mrbill.viewmodel

import dev.mrbill.core.PocQuery
import dev.mrbill.wire.PocInput
import dev.mrbill.wire.Visibility
import kotlinx.coroutines.runBlocking
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Test

/** The PoC screens' models: create with a refused field, edit, search with a typo, chips,
 * infinite scroll, delete; and a session refreshed under them. */
class PocModelsTest {
    @Test
    fun aRefusedFieldIsShownOnItThenSavedSearchedWithATypoAndDeleted() = runBlocking {
        val app = Platform.signedIn()
        val editor = app.pocEditor(null)
        editor.edit { it.copy(name = "Kubernetes mesh", repositoryUrl = "ftp://nowhere", language = "go", tags = "mesh, k8s") }
        editor.save()
        val refused = editor.state.await("the refusal") { !it.saving && it.problem != null }
        assertEquals(setOf("repository_url"), refused.fieldErrors.keys)
        editor.edit { it.copy(name = "Kubernetes mesh!") }
        assertEquals("another field's edit keeps the message", setOf("repository_url"), editor.state.value.fieldErrors.keys)
        editor.edit { it.copy(repositoryUrl = "https://github.com/acme/mesh") }
        assertTrue("the message goes with the edit", editor.state.value.fieldErrors.isEmpty())
        editor.save()
        val saved = editor.state.await("saved") { it.saved }.poc!!
        assertEquals(listOf("mesh", "k8s"), saved.tags)

        // Edit: only the changed field is sent; the rest stays as saved.
        val again = app.pocEditor(saved.id)
        again.state.await("loaded") { !it.loading && it.poc != null }
        again.edit { it.copy(description = "a service mesh for the demo") }
        again.save()
        val edited = again.state.await("edited") { it.saved }.poc!!
        assertEquals("a service mesh for the demo", edited.description)
        assertEquals("Kubernetes mesh!", edited.name)

        val list = app.pocList()
        list.setText("kubernets mesh")
        val found = list.state.await("the typo found") { s -> !s.loading && s.items.any { it.id == saved.id } }
        assertTrue(found.languages.any { it.value == "go" && it.count >= 1 })
        list.toggleLanguage("go")
        val go = list.state.await("filtered to go") { s -> !s.loading && s.language == "go" }
        assertTrue(go.items.isNotEmpty() && go.items.all { it.language == "go" })
        assertTrue(go.languages.first().let { it.value == "go" && it.selected })

        again.delete()
        again.state.await("deleted") { it.deleted }
        list.deleted(saved.id)
        assertTrue(list.state.value.items.none { it.id == saved.id })
        listOf(editor, again, list).forEach { it.close() }
    }

    /** Infinite scroll: pages join without a duplicate until every match is there; and a
     * session whose access token ran out is refreshed under the screen, once. */
    @Test
    fun pagesJoinUntilTheEndAndAnExpiredTokenIsRefreshedUnderneath() = runBlocking {
        val store = dev.mrbill.core.MemoryTokenStore()
        val app = Platform.signedIn(store)
        val tag = "scroll${System.nanoTime() % 100000}"
        repeat(PocListModel.PER_PAGE.toInt() + 5) { i ->
            app.core.createPoc(PocInput("Scroll $i", "", "https://github.com/acme/scroll-$i", "rust", listOf(tag), listOf(), Visibility.TENANT))
        }
        // Wait for the index (it follows writes within moments).
        val want = PocListModel.PER_PAGE.toLong() + 5
        while (app.core.searchPocs(PocQuery(null, null, listOf(tag), false, 1u, 1u)).total.toLong() < want) kotlinx.coroutines.delay(100)

        store.save(store.load()!!.copy(accessExpiresAtMs = 0))
        val list = app.pocList()
        list.toggleTag(tag)
        val first = list.state.await("the first page") { s -> !s.loading && s.tags == setOf(tag) && s.items.isNotEmpty() }
        assertEquals(PocListModel.PER_PAGE.toInt(), first.items.size)
        assertEquals(want, first.total)
        list.loadMore()
        val all = list.state.await("the last page") { s -> !s.loadingMore && s.items.size.toLong() == want }
        assertTrue(all.endReached)
        assertEquals(all.items.size, all.items.map { it.id }.toSet().size)
        list.loadMore()
        assertTrue("nothing past the end", !list.state.value.loadingMore)
        assertNull(list.state.value.problem)
        assertTrue("refreshed", store.load()!!.accessExpiresAtMs > System.currentTimeMillis())
        list.close()
    }
}
