package dev.mrbill.viewmodel

import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update

data class CompanyState(
    /** The company's slug (`acme`) or the user's work email (`ada@acme.com`). */
    val input: String = "",
    val busy: Boolean = false,
    val problem: Problem? = null,
) {
    val canSubmit: Boolean get() = input.isNotBlank() && !busy
}

/** The first screen: which company the user works for. */
class CompanyModel(app: AppModel) : ScreenModel(app) {
    private val state_ = MutableStateFlow(CompanyState())
    val state: StateFlow<CompanyState> = state_.asStateFlow()

    fun setInput(text: String) = state_.update { it.copy(input = text, problem = null) }

    fun submit() {
        val input = state_.value.input.trim()
        if (input.isEmpty() || state_.value.busy) return
        state_.update { it.copy(busy = true, problem = null) }
        act({ problem -> state_.update { it.copy(busy = false, problem = problem) } }) {
            val company = app.core.resolve(input)
            state_.update { it.copy(busy = false) }
            app.companyChosen(company)
        }
    }
}
