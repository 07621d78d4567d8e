// Progressive enhancement only: every page works without this file.
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
    problem.hidden = false;
    problem.replaceChildren();
    for (const [text, tag] of [[error.message, "p"], [error.hint, "p"], [error.code, "code"]]) {
      const el = document.createElement(tag);
      el.textContent = text || "";
      problem.appendChild(el);
    }
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
