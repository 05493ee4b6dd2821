package dev.mrbill.viewmodel

import dev.mrbill.wire.Poc
import dev.mrbill.wire.PocInput
import dev.mrbill.wire.PocPatch
import dev.mrbill.wire.Visibility
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update

/** A PoC as its form holds it: lists as comma-separated text. */
data class PocForm(
    val name: String = "",
    val description: String = "",
    val repositoryUrl: String = "",
    val language: String = "",
    val tags: String = "",
    val frameworks: String = "",
    val visibility: Visibility = Visibility.TENANT,
) {
    fun input() = PocInput(name.trim(), description.trim(), repositoryUrl.trim(), language.trim(), list(tags), list(frameworks), visibility)

    /** Only what differs from [poc]: an edit never overwrites a field the user left alone. */
    fun patch(poc: Poc): PocPatch {
        val i = input()
        return PocPatch(
            name = i.name.takeIf { it != poc.name },
            description = i.description.takeIf { it != poc.description },
            repositoryUrl = i.repositoryUrl.takeIf { it != poc.repositoryUrl },
            language = i.language.takeIf { it != poc.language },
            tags = i.tags.takeIf { it != poc.tags },
            frameworks = i.frameworks.takeIf { it != poc.frameworks },
            visibility = i.visibility.takeIf { it != poc.visibility },
        )
    }

    companion object {
        fun of(poc: Poc) = PocForm(
            poc.name, poc.description, poc.repositoryUrl, poc.language,
            poc.tags.joinToString(", "), poc.frameworks.joinToString(", "), poc.visibility,
        )

        private fun list(text: String) = text.split(',').map { it.trim() }.filter { it.isNotEmpty() }
    }
}

data class PocEditorState(
    /** The PoC as saved (null: a new one, not saved yet). */
    val poc: Poc? = null,
    val form: PocForm = PocForm(),
    val loading: Boolean = false,
    val saving: Boolean = false,
    /** Gone (deleted here): the screen closes. */
    val deleted: Boolean = false,
    /** Saved since the screen opened: the screen may close. */
    val saved: Boolean = false,
    val problem: Problem? = null,
) {
    /** Inline messages by form field: `name`, `description`, `repository_url`, `language`,
     * `tags`, `frameworks`, `visibility` (the API's field names). */
    val fieldErrors: Map<String, String> get() = (problem as? Problem.Invalid)?.fields ?: emptyMap()
    val isNew: Boolean get() = poc == null
}

/** A PoC's detail, edit and create screen: refused fields come back inline, on the field. */
class PocEditorModel(app: AppModel, id: String?) : ScreenModel(app) {
    private val state_ = MutableStateFlow(PocEditorState(loading = id != null))
    val state: StateFlow<PocEditorState> = state_.asStateFlow()

    init {
        if (id != null) {
            act(::failed) {
                val poc = withRetry { app.core.poc(id) }
                state_.update { it.copy(poc = poc, form = PocForm.of(poc), loading = false) }
            }
        }
    }

    /** Changes the form; the message on a field goes once the user edits it. */
    fun edit(change: (PocForm) -> PocForm) = state_.update { s ->
        val form = change(s.form)
        val problem = when (val p = s.problem) {
            is Problem.Invalid -> p.fields.filterKeys { field -> unchanged(field, s.form, form) }
                .takeIf { it.isNotEmpty() }?.let { Problem.Invalid(it) }
            else -> p
        }
        s.copy(form = form, problem = problem)
    }

    fun save() {
        val s = state_.value
        if (s.saving || s.loading) return
        state_.update { it.copy(saving = true, problem = null) }
        act(::failed) {
            val poc = when (val saved = s.poc) {
                null -> app.core.createPoc(s.form.input())
                else -> app.core.updatePoc(saved.id, s.form.patch(saved))
            }
            state_.update { it.copy(poc = poc, form = PocForm.of(poc), saving = false, saved = true) }
        }
    }

    fun delete() {
        val poc = state_.value.poc ?: return
        state_.update { it.copy(saving = true, problem = null) }
        act(::failed) {
            app.core.deletePoc(poc.id)
            state_.update { it.copy(saving = false, deleted = true) }
        }
    }

    private fun failed(problem: Problem) = state_.update { it.copy(loading = false, saving = false, problem = problem) }

    private companion object {
        fun unchanged(field: String, before: PocForm, after: PocForm): Boolean = when (field) {
            "name" -> before.name == after.name
            "description" -> before.description == after.description
            "repository_url" -> before.repositoryUrl == after.repositoryUrl
            "language" -> before.language == after.language
            "tags" -> before.tags == after.tags
            "frameworks" -> before.frameworks == after.frameworks
            "visibility" -> before.visibility == after.visibility
            else -> true
        }
    }
}
