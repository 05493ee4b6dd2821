package dev.mrbill.viewmodel

import dev.mrbill.wire.Dashboard
import dev.mrbill.wire.KeyCount
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update

/** One bar of a chart: its label, its value, and its length relative to the longest (0–1). */
data class Bar(val label: String, val value: Long, val fraction: Float)

data class DashboardState(
    val dashboard: Dashboard? = null,
    /** PoCs created per month, oldest first. */
    val months: List<Bar> = emptyList(),
    val languages: List<Bar> = emptyList(),
    val tags: List<Bar> = emptyList(),
    val loading: Boolean = true,
    val problem: Problem? = null,
)

/** The dashboard: totals and the charts' bars (the screen draws them, nothing more). */
class DashboardModel(app: AppModel) : ScreenModel(app) {
    private val state_ = MutableStateFlow(DashboardState())
    val state: StateFlow<DashboardState> = state_.asStateFlow()

    init {
        refresh()
    }

    fun refresh() {
        state_.update { it.copy(loading = true, problem = null) }
        act({ p -> state_.update { it.copy(loading = false, problem = p) } }) {
            val d = withRetry { app.core.dashboard() }
            state_.update {
                it.copy(dashboard = d, months = bars(d.byMonth), languages = bars(d.byLanguage.take(8)), tags = bars(d.byTag.take(8)), loading = false)
            }
        }
    }

    companion object {
        fun bars(counts: List<KeyCount>): List<Bar> {
            val top = counts.maxOfOrNull { it.count.toLong() }?.coerceAtLeast(1) ?: 1
            return counts.map { Bar(it.key, it.count.toLong(), it.count.toFloat() / top) }
        }
    }
}
