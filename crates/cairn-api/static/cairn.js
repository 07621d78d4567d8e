// Progressive enhancement only: every page works without this file.

// An API error shown in a page's problem box: its message, its hint and its code, as the pages show them.
function showProblem(box, error) {
  box.hidden = false;
  box.replaceChildren();
  for (const [text, tag] of [[error.message, "p"], [error.hint, "p"], [error.code, "code"]]) {
    const el = document.createElement(tag);
    el.textContent = text || "";
    box.appendChild(el);
  }
}
// After a network change, the page that still reaches the box confirms it, so the change is kept.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form[data-auto-confirm]");
  if (form) {
    form.querySelector("button").textContent = "Confirming…";
    form.submit();
  }
});

// Firmware upload (System page): the bundle goes to POST /api/v1/firmware as the body, with the upload's
// progress; then the install job's progress; a refusal shows its message, hint and code; once installed the
// Reboot button appears.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form[data-firmware-upload]");
  if (!form) return;
  const bar = form.querySelector("progress");
  const status = form.querySelector(".firmware-status");
  const problem = form.querySelector(".problem");
  const button = form.querySelector("button");
  const reboot = document.querySelector("form[data-firmware-reboot]");
  const token = form.querySelector("input[name=csrf_token]").value;
  const show = (percent, text) => {
    bar.hidden = false;
    bar.value = percent;
    status.textContent = text;
  };
  const refuse = (error) => {
    bar.hidden = true;
    status.textContent = "";
    showProblem(problem, error);
    button.disabled = false;
  };
  const follow = (id) => {
    fetch("/api/v1/jobs/" + encodeURIComponent(id), { credentials: "same-origin" })
      .then((r) => r.json())
      .then((job) => {
        if (job.error && !job.state) return refuse(job.error);
        show(job.percent, job.message);
        if (job.state === "running") return setTimeout(() => follow(id), 500);
        if (job.state === "failed") return refuse(job.error || { message: job.message });
        show(100, job.message);
        if (reboot) reboot.hidden = false;
        button.disabled = false;
      })
      .catch(() => setTimeout(() => follow(id), 1000));
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = form.querySelector("input[type=file]").files[0];
    if (!file) return;
    problem.hidden = true;
    button.disabled = true;
    const insist = form.querySelector("input[name=insist]").checked;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/firmware" + (insist ? "?insist=1" : ""));
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("X-CSRF-Token", token);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) show(Math.round((100 * e.loaded) / e.total), "Uploading " + file.name);
    };
    xhr.onload = () => {
      let answer = {};
      try { answer = JSON.parse(xhr.responseText); } catch (_) {}
      if (xhr.status === 202 && answer.job) {
        show(answer.job.percent, answer.job.message);
        follow(answer.job.id);
      } else {
        refuse(answer.error || { message: "The box answered " + xhr.status + "." });
      }
    };
    xhr.onerror = () => refuse({ message: "The upload was interrupted.", hint: "Check the connection to the box and try again." });
    show(0, "Uploading " + file.name);
    xhr.send(file);
  });
});

// Settings restore (System page): the backup goes to POST /api/v1/system/restore as the body with its passphrase
// in a header; first as a dry run, whose changes are shown, then for real once the owner presses Restore.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form[data-settings-restore]");
  if (!form) return;
  const problem = form.querySelector(".problem");
  const changes = form.querySelector(".restore-changes");
  const now = form.querySelector(".restore-now");
  const token = form.querySelector("input[name=csrf_token]").value;
  const refuse = (error) => showProblem(problem, error);
  const send = (dryRun) => {
    const file = form.querySelector("input[type=file]").files[0];
    if (!file) return;
    const parts = [...form.querySelectorAll("input[name=part]:checked")].map((p) => p.value).join(",");
    problem.hidden = true;
    const query = "?parts=" + encodeURIComponent(parts) + (dryRun ? "&dry_run=1" : "");
    fetch("/api/v1/system/restore" + query, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/octet-stream",
        "X-CSRF-Token": token,
        "X-Cairn-Passphrase": form.querySelector("input[name=passphrase]").value,
      },
      body: file,
    })
      .then((r) => r.json())
      .then((answer) => {
        if (answer.error) return refuse(answer.error);
        changes.hidden = false;
        changes.textContent = (dryRun ? "Would change:\n" : "Restored:\n") + JSON.stringify(answer.changes, null, 2);
        now.hidden = !dryRun;
        if (!dryRun && answer.restarting) changes.textContent += "\nThe box is restarting so the network settings apply.";
      })
      .catch(() => refuse({ message: "The box did not answer.", hint: "Check the connection and try again." }));
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(true);
  });
  now.addEventListener("click", () => send(false));
});
