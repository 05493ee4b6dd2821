package dev.mrbill.android.ui

import androidx.compose.foundation.clickable
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.material3.Button
import androidx.compose.material3.Checkbox
import androidx.compose.material3.HorizontalDivider
import androidx.compose.material3.ListItem
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.getValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import dev.mrbill.viewmodel.AppModel
import dev.mrbill.viewmodel.Problem
import dev.mrbill.wire.Dojo

/** The dojos: join by code, create one, the list. */
@Composable
fun DojosScreen(app: AppModel, onOpen: (Dojo) -> Unit) {
    val model = screenModel { app.dojos() }
    val s by model.state.collectAsStateWithLifecycle()
    LaunchedEffect(s.open) {
        s.open?.let { dojo ->
            model.opened()
            onOpen(dojo)
        }
    }
    val e = s.fieldErrors
    LazyColumn(Modifier.padding(horizontal = 16.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
        item {
            Column(verticalArrangement = Arrangement.spacedBy(8.dp)) {
                Text("Join", style = MaterialTheme.typography.titleMedium)
                Field("Code from the host", s.joinCode, model::setJoinCode, e["join_code"])
                Button(onClick = model::join, enabled = !s.busy && s.joinCode.isNotBlank()) { Text("Join") }
                HorizontalDivider()
                Text("New dojo", style = MaterialTheme.typography.titleMedium)
                Field("Name", s.form.name, { v -> model.editForm { it.copy(name = v) } }, e["name"])
                Field("Language", s.form.language, { v -> model.editForm { it.copy(language = v) } }, e["language"])
                Field("Description", s.form.description, { v -> model.editForm { it.copy(description = v) } }, e["description"], singleLine = false)
                Field("Starting code", s.form.initialCode, { v -> model.editForm { it.copy(initialCode = v) } }, e["initial_code"], singleLine = false)
                Row(verticalAlignment = Alignment.CenterVertically) {
                    Checkbox(checked = s.form.private, onCheckedChange = { p -> model.editForm { it.copy(private = p) } })
                    Text("Private (join by code only)")
                }
                Button(onClick = model::create, enabled = !s.busy) { Text("Create") }
                if (s.problem !is Problem.Invalid) ProblemLine(s.problem)
                HorizontalDivider()
            }
        }
        items(s.items, key = { it.id }) { dojo ->
            ListItem(
                headlineContent = { Text(dojo.name) },
                supportingContent = { Text("${dojo.language} · ${dojo.status.name.lowercase()} · ${dojo.online} online") },
                modifier = Modifier.clickable { onOpen(dojo) },
            )
        }
    }
}
