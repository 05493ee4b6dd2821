package dev.mrbill.android.ui

import androidx.compose.foundation.clickable
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Box
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.LazyRow
import androidx.compose.foundation.lazy.items
import androidx.compose.foundation.lazy.rememberLazyListState
import androidx.compose.material.icons.Icons
import androidx.compose.material.icons.filled.Add
import androidx.compose.material.icons.filled.Search
import androidx.compose.material3.Button
import androidx.compose.material3.CircularProgressIndicator
import androidx.compose.material3.FilterChip
import androidx.compose.material3.FloatingActionButton
import androidx.compose.material3.Icon
import androidx.compose.material3.ListItem
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.SegmentedButton
import androidx.compose.material3.SegmentedButtonDefaults
import androidx.compose.material3.SingleChoiceSegmentedButtonRow
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.derivedStateOf
import androidx.compose.runtime.getValue
import androidx.compose.runtime.remember
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.text.input.KeyboardType
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import dev.mrbill.viewmodel.AppModel
import dev.mrbill.viewmodel.Chip
import dev.mrbill.wire.Visibility

/** The PoC list: search as you type, chips with counts, infinite scroll. */
@Composable
fun PocListScreen(app: AppModel, onOpen: (String) -> Unit, onCreate: () -> Unit) {
    val model = screenModel { app.pocList() }
    val s by model.state.collectAsStateWithLifecycle()
    val list = rememberLazyListState()
    // Near the end of what is loaded: ask for the next page.
    val nearEnd by remember { derivedStateOf { (list.layoutInfo.visibleItemsInfo.lastOrNull()?.index ?: 0) >= list.layoutInfo.totalItemsCount - 5 } }
    LaunchedEffect(nearEnd, s.items.size) { if (nearEnd) model.loadMore() }
    Box(Modifier.fillMaxSize()) {
        Column {
            OutlinedTextField(
                value = s.text,
                onValueChange = model::setText,
                placeholder = { Text("Search PoCs") },
                leadingIcon = { Icon(Icons.Default.Search, contentDescription = null) },
                singleLine = true,
                modifier = Modifier.fillMaxWidth().padding(12.dp),
            )
            Chips(s.languages, model::toggleLanguage)
            Chips(s.tagChips, model::toggleTag, prefix = "#")
            Row(Modifier.padding(horizontal = 12.dp), verticalAlignment = Alignment.CenterVertically) {
                FilterChip(selected = s.mine, onClick = model::toggleMine, label = { Text("Mine") })
                Text("  ${s.total} PoCs", style = MaterialTheme.typography.labelMedium)
            }
            ProblemLine(s.problem)
            if (s.loading && s.items.isEmpty()) Loading()
            LazyColumn(state = list) {
                items(s.items, key = { it.id }) { poc ->
                    ListItem(
                        headlineContent = { Text(poc.name) },
                        supportingContent = { Text("${poc.language} · ${poc.tags.joinToString(" ") { "#$it" }}") },
                        modifier = Modifier.clickable { onOpen(poc.id) },
                    )
                }
                if (s.loadingMore) item { Box(Modifier.fillMaxWidth().padding(16.dp), Alignment.Center) { CircularProgressIndicator() } }
            }
        }
        FloatingActionButton(onClick = onCreate, modifier = Modifier.align(Alignment.BottomEnd).padding(16.dp)) {
            Icon(Icons.Default.Add, contentDescription = "New PoC")
        }
    }
}

@Composable
private fun Chips(chips: List<Chip>, toggle: (String) -> Unit, prefix: String = "") {
    LazyRow(horizontalArrangement = Arrangement.spacedBy(8.dp), modifier = Modifier.padding(horizontal = 12.dp)) {
        items(chips, key = { it.value }) { chip ->
            FilterChip(selected = chip.selected, onClick = { toggle(chip.value) }, label = { Text("$prefix${chip.value} ${chip.count}") })
        }
    }
}

/** A PoC's detail and edit form (or a new one): refused fields say why, inline. */
@Composable
fun PocEditorScreen(app: AppModel, id: String?, done: () -> Unit) {
    val model = screenModel(key = "poc-${id ?: "new"}") { app.pocEditor(id) }
    val s by model.state.collectAsStateWithLifecycle()
    LaunchedEffect(s.deleted, s.saved) { if (s.deleted || (s.saved && id == null)) done() }
    if (s.loading) return Loading()
    val e = s.fieldErrors
    val f = s.form
    Form {
        Text(if (s.isNew) "New PoC" else f.name, style = MaterialTheme.typography.headlineSmall)
        Field("Name", f.name, { v -> model.edit { it.copy(name = v) } }, e["name"])
        Field("Repository URL", f.repositoryUrl, { v -> model.edit { it.copy(repositoryUrl = v) } }, e["repository_url"], keyboard = KeyboardType.Uri)
        Field("Language", f.language, { v -> model.edit { it.copy(language = v) } }, e["language"])
        Field("Tags (comma-separated)", f.tags, { v -> model.edit { it.copy(tags = v) } }, e["tags"])
        Field("Frameworks (comma-separated)", f.frameworks, { v -> model.edit { it.copy(frameworks = v) } }, e["frameworks"])
        Field("Description", f.description, { v -> model.edit { it.copy(description = v) } }, e["description"], singleLine = false)
        SingleChoiceSegmentedButtonRow {
            Visibility.entries.forEachIndexed { i, v ->
                SegmentedButton(
                    selected = f.visibility == v,
                    onClick = { model.edit { it.copy(visibility = v) } },
                    shape = SegmentedButtonDefaults.itemShape(i, Visibility.entries.size),
                ) { Text(v.name.lowercase()) }
            }
        }
        if (s.problem !is dev.mrbill.viewmodel.Problem.Invalid) ProblemLine(s.problem)
        Row(horizontalArrangement = Arrangement.spacedBy(12.dp)) {
            Button(onClick = model::save, enabled = !s.saving) { Text(if (s.saving) "Saving…" else "Save") }
            if (!s.isNew) OutlinedButton(onClick = model::delete, enabled = !s.saving) { Text("Delete") }
        }
        if (s.saved && !s.isNew) Text("Saved.", style = MaterialTheme.typography.labelMedium)
    }
}
