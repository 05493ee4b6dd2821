package dev.mrbill.android.ui

import androidx.compose.foundation.background
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Box
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxHeight
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.height
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.layout.width
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import dev.mrbill.viewmodel.AppModel
import dev.mrbill.viewmodel.Bar

/** Totals, PoCs per month as columns, top languages and tags as bars. */
@Composable
fun DashboardScreen(app: AppModel) {
    val model = screenModel { app.dashboard() }
    val s by model.state.collectAsStateWithLifecycle()
    val d = s.dashboard
    if (d == null) {
        if (s.loading) Loading() else Form { ProblemLine(s.problem); TextButton(onClick = model::refresh) { Text("Try again") } }
        return
    }
    Form {
        Text("${d.total} PoCs in ${d.languages} languages", style = MaterialTheme.typography.headlineSmall)
        Text("Per month", style = MaterialTheme.typography.titleMedium)
        Row(Modifier.fillMaxWidth().height(140.dp), horizontalArrangement = Arrangement.spacedBy(4.dp), verticalAlignment = Alignment.Bottom) {
            s.months.forEach { bar ->
                Column(Modifier.weight(1f).fillMaxHeight(), verticalArrangement = Arrangement.Bottom, horizontalAlignment = Alignment.CenterHorizontally) {
                    Box(Modifier.fillMaxWidth().fillMaxHeight(bar.fraction.coerceAtLeast(0.02f) * 0.85f).background(MaterialTheme.colorScheme.primary))
                    Text(bar.label.takeLast(2), style = MaterialTheme.typography.labelSmall)
                }
            }
        }
        Bars("Languages", s.languages)
        Bars("Tags", s.tags)
    }
}

@Composable
private fun Bars(title: String, bars: List<Bar>) {
    Text(title, style = MaterialTheme.typography.titleMedium)
    bars.forEach { bar ->
        Row(verticalAlignment = Alignment.CenterVertically) {
            Text(bar.label, Modifier.width(96.dp), style = MaterialTheme.typography.bodySmall)
            Box(Modifier.weight(1f).height(14.dp)) {
                Box(Modifier.fillMaxWidth(bar.fraction.coerceAtLeast(0.02f)).fillMaxHeight().background(MaterialTheme.colorScheme.tertiary))
            }
            Text(" ${bar.value}", Modifier.padding(start = 4.dp), style = MaterialTheme.typography.bodySmall)
        }
    }
}
