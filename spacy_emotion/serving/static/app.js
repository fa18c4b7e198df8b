// spacy-emotion web page: POST the text to ./predict and draw the result.
// No dependencies; the page talks only to the server that served it.
"use strict";

(function () {
  const LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"];
  const $ = (id) => document.getElementById(id);
  const form = $("form"), textBox = $("text"), button = $("submit"), errorBox = $("error");
  let maxChars = 10000;

  const percent = (p) => (100 * p).toFixed(1) + "%";
  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function updateCount() {
    const n = Array.from(textBox.value).length; // code points, as the server counts
    $("count").textContent = n.toLocaleString("en");
    $("text-help").classList.toggle("over", n > maxChars);
  }

  async function loadInfo() {
    try {
      const response = await fetch("health");
      const health = await response.json();
      maxChars = health.limits.max_chars;
      $("limit").textContent = maxChars.toLocaleString("en");
      $("model-info").textContent = `Model: ${health.model} · spacy-emotion ${health.version}`;
      updateCount();
    } catch (err) {
      $("model-info").textContent = "Model information unavailable";
    }
  }

  function drawChart(result) {
    const chart = $("chart");
    chart.replaceChildren();
    for (const label of LABELS) {
      const p = result.cats[label];
      const row = el("div", `bar-row emo-${label}`);
      row.setAttribute("role", "listitem");
      row.setAttribute("aria-label", `${label}: ${percent(p)}`);
      row.dataset.label = label;
      row.dataset.probability = String(p);
      if (label === result.emotion) row.classList.add("top-emotion");
      const track = el("span", "bar-track");
      track.setAttribute("aria-hidden", "true");
      const bar = el("span", "bar");
      bar.style.width = percent(p);
      track.append(bar);
      const name = el("span", "bar-label", label);
      name.setAttribute("aria-hidden", "true");
      const value = el("span", "bar-value", percent(p));
      value.setAttribute("aria-hidden", "true");
      row.append(name, track, value);
      chart.append(row);
    }
  }

  function drawSentences(text, sentences) {
    // start_char/end_char count code points (Python str indices): slice an array of code points.
    const chars = Array.from(text);
    const box = $("sentences");
    box.replaceChildren();
    let pos = 0;
    for (const sent of sentences) {
      if (sent.start_char > pos) box.append(chars.slice(pos, sent.start_char).join(""));
      const emotion = sent.emotion || "none";
      const mark = el("mark", `sent emo-${emotion}`, chars.slice(sent.start_char, sent.end_char).join(""));
      const detail = sent.emotion ? `${sent.emotion} ${percent(sent.score)}` : "no emotion";
      mark.title = detail;
      mark.dataset.emotion = emotion;
      const tag = el("span", `tag emo-${emotion}`, sent.emotion || "none");
      tag.setAttribute("aria-label", `(${detail})`);
      mark.append(tag);
      box.append(mark);
      pos = sent.end_char;
    }
    if (pos < chars.length) box.append(chars.slice(pos).join(""));
  }

  function drawLegend() {
    const legend = $("legend");
    legend.replaceChildren();
    for (const label of LABELS) {
      const item = el("li");
      const swatch = el("span", `swatch emo-${label}`);
      swatch.setAttribute("aria-hidden", "true");
      item.append(swatch, label);
      legend.append(item);
    }
  }

  function errorMessage(status, body) {
    if (body && body.message) return body.message;
    if (body && typeof body.detail === "string") return body.detail;
    return `The server answered ${status}.`;
  }

  async function classify(event) {
    event.preventDefault();
    const text = textBox.value;
    if (!text.trim()) {
      showError("Type a text to classify first.");
      textBox.focus();
      return;
    }
    showError("");
    button.disabled = true;
    button.textContent = "Classifying…";
    try {
      const response = await fetch("predict", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ text: text, sentences: true }),
      });
      const body = await response.json().catch(() => null);
      if (!response.ok) throw new Error(errorMessage(response.status, body));
      const top = $("top-label");
      top.textContent = body.emotion || "none (below the threshold)";
      top.className = `emo-name emo-${body.emotion || "none"}`;
      $("top-score").textContent = body.emotion ? `(${percent(body.score)} confidence)` : "";
      drawChart(body);
      drawSentences(text, body.sentences || []);
      $("result").hidden = false;
    } catch (err) {
      $("result").hidden = true; // no stale result next to the error
      showError(`Could not classify the text: ${err.message}`);
    } finally {
      button.disabled = false;
      button.textContent = "Classify";
    }
  }

  drawLegend();
  textBox.addEventListener("input", updateCount);
  form.addEventListener("submit", classify);
  loadInfo();
})();
