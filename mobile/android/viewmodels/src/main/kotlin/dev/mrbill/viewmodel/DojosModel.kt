package dev.mrbill.viewmodel

import dev.mrbill.wire.CreateDojo
import dev.mrbill.wire.Dojo
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update

/** The "new dojo" form. */
data class DojoForm(
    val name: String = "",
    val description: String = "",
    val language: String = "",
    val initialCode: String = "",
    val private: Boolean = false,
) {
    fun request() = CreateDojo(
        name = name.trim(), description = description.trim(), language = language.trim(),
        maxParticipants = null, private = private, initialCode = initialCode, scheduledStart = null,
    )
}

data class DojosState(
    val items: List<Dojo> = emptyList(),
    val loading: Boolean = true,
    val form: DojoForm = DojoForm(),
    /** The host's join code, as typed. */
    val joinCode: String = "",
    val busy: Boolean = false,
    /** A dojo to open now (created or joined); the screen navigates, then calls [DojosModel.opened]. */
    val open: Dojo? = null,
    val problem: Problem? = null,
) {
    val fieldErrors: Map<String, String> get() = (problem as? Problem.Invalid)?.fields ?: emptyMap()
}

/** The dojos: the list, a new one, joining one by its host's code. */
class DojosModel(app: AppModel) : ScreenModel(app) {
    private val state_ = MutableStateFlow(DojosState())
    val state: StateFlow<DojosState> = state_.asStateFlow()

    init {
        refresh()
    }

    fun refresh() {
        state_.update { it.copy(loading = true, problem = null) }
        act(::failed) {
            val page = withRetry { app.core.dojos() }
            state_.update { it.copy(items = page.items, loading = false) }
        }
    }

    fun editForm(change: (DojoForm) -> DojoForm) = state_.update { it.copy(form = change(it.form)) }
    fun setJoinCode(text: String) = state_.update { it.copy(joinCode = text, problem = null) }

    fun create() = run { app.core.createDojo(state_.value.form.request()) }

    /** Joins by the code the host shared (a `join_code` or `invalid_join_code` refusal otherwise). */
    fun join() = run { app.core.joinDojo(state_.value.joinCode.trim()) }

    /** The screen navigated to [DojosState.open]. */
    fun opened() = state_.update { it.copy(open = null) }

    private fun run(work: suspend () -> Dojo) {
        if (state_.value.busy) return
        state_.update { it.copy(busy = true, problem = null) }
        act(::failed) {
            val dojo = work()
            state_.update { s ->
                s.copy(busy = false, open = dojo, form = DojoForm(), joinCode = "", items = listOf(dojo) + s.items.filter { it.id != dojo.id })
            }
        }
    }

    private fun failed(problem: Problem) = state_.update { it.copy(loading = false, busy = false, problem = problem) }
}
