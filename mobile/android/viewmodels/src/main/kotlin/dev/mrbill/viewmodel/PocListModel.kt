package dev.mrbill.viewmodel

import dev.mrbill.core.PocQuery
import dev.mrbill.wire.FacetCount
import dev.mrbill.wire.Poc
import kotlinx.coroutines.Job
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update

/** A filter chip: a facet value, its count over all matches, and whether it is on. */
data class Chip(val value: String, val count: Long, val selected: Boolean)

data class PocListState(
    val text: String = "",
    val language: String? = null,
    val tags: Set<String> = emptySet(),
    val mine: Boolean = false,
    val items: List<Poc> = emptyList(),
    /** Matches in all (the list grows page by page up to it). */
    val total: Long = 0,
    val languages: List<Chip> = emptyList(),
    val tagChips: List<Chip> = emptyList(),
    /** A first page is on its way (the list shows a spinner). */
    val loading: Boolean = false,
    /** A further page is on its way (a spinner at the list's end). */
    val loadingMore: Boolean = false,
    val problem: Problem? = null,
) {
    val endReached: Boolean get() = items.size.toLong() >= total
}

/**
 * The PoC list: a search field (typos tolerated, searched as the user types after a short
 * pause), language and tag chips with their counts, "mine", and infinite scroll: the screen
 * calls [loadMore] when the end of the list comes into view.
 */
class PocListModel(app: AppModel, private val pauseMs: Long = 250) : ScreenModel(app) {
    private val state_ = MutableStateFlow(PocListState())
    val state: StateFlow<PocListState> = state_.asStateFlow()
    private var search: Job? = null
    private var page = 0u

    init {
        refresh()
    }

    fun setText(text: String) {
        state_.update { it.copy(text = text) }
        refresh(pauseMs)
    }

    fun toggleLanguage(language: String) {
        state_.update { it.copy(language = if (it.language == language) null else language) }
        refresh()
    }

    fun toggleTag(tag: String) {
        state_.update { it.copy(tags = if (tag in it.tags) it.tags - tag else it.tags + tag) }
        refresh()
    }

    fun toggleMine() {
        state_.update { it.copy(mine = !it.mine) }
        refresh()
    }

    /** Starts over with the current query (pull to refresh; a new query). A search still on
     * its way is dropped, so a late answer never replaces a newer one. */
    fun refresh(afterMs: Long = 0) {
        search?.cancel()
        state_.update { it.copy(loading = true, loadingMore = false, problem = null) }
        search = act(::failed) {
            if (afterMs > 0) delay(afterMs)
            val found = withRetry { app.core.searchPocs(query(1u)) }
            page = 1u
            state_.update { s ->
                s.copy(
                    items = found.items,
                    total = found.total.toLong(),
                    languages = chips(found.facets.language, setOfNotNull(s.language)),
                    tagChips = chips(found.facets.tags, s.tags),
                    loading = false,
                )
            }
        }
    }

    /** The next page, when the end of the list is in view. */
    fun loadMore() {
        val now = state_.value
        if (now.loading || now.loadingMore || now.endReached) return
        state_.update { it.copy(loadingMore = true) }
        search = act(::failed) {
            val found = withRetry { app.core.searchPocs(query(page + 1u)) }
            page += 1u
            state_.update { s ->
                val known = s.items.mapTo(HashSet()) { it.id }
                // A PoC created meanwhile shifts pages: never show one twice.
                s.copy(items = s.items + found.items.filter { it.id !in known }, total = found.total.toLong(), loadingMore = false)
            }
        }
    }

    /** A PoC saved on its own screen: shown here without a reload. */
    fun saved(poc: Poc) = state_.update { s ->
        if (s.items.any { it.id == poc.id }) s.copy(items = s.items.map { if (it.id == poc.id) poc else it })
        else s.copy(items = listOf(poc) + s.items, total = s.total + 1)
    }

    fun deleted(id: String) = state_.update { s ->
        if (s.items.none { it.id == id }) s else s.copy(items = s.items.filter { it.id != id }, total = s.total - 1)
    }

    private fun query(page: UInt): PocQuery {
        val s = state_.value
        return PocQuery(
            text = s.text.trim().ifEmpty { null },
            language = s.language,
            tags = s.tags.sorted(),
            mine = s.mine,
            page = page,
            perPage = PER_PAGE,
        )
    }

    private fun failed(problem: Problem) = state_.update { it.copy(loading = false, loadingMore = false, problem = problem) }

    companion object {
        const val PER_PAGE: UInt = 30u

        /** The facet's chips, selected ones first and always shown (even at a count of 0). */
        fun chips(facets: List<FacetCount>, selected: Set<String>): List<Chip> {
            val counted = facets.map { Chip(it.value, it.count.toLong(), it.value in selected) }
            val missing = selected.filter { v -> counted.none { it.value == v } }.map { Chip(it, 0, true) }
            return (counted + missing).sortedByDescending { it.selected }
        }
    }
}
